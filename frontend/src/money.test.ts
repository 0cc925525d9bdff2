import { describe, expect, it } from 'vitest';
import { formatCents, formatChange, MAX_AMOUNT_CENTS, parseEuros } from './money';

describe('formatCents', () => {
  it('formats the nl-NL way with exact cents', () => {
    expect(formatCents('0')).toBe('€ 0,00');
    expect(formatCents('5')).toBe('€ 0,05');
    expect(formatCents('123456')).toBe('€ 1.234,56');
    expect(formatCents('-5')).toBe('€ -0,05');
    expect(formatCents('100000000')).toBe('€ 1.000.000,00');
    expect(formatCents(1050)).toBe('€ 10,50');
  });

  it('keeps every digit of amounts beyond a float', () => {
    expect(formatCents('9223372036854775807')).toBe('€ 92.233.720.368.547.758,07');
    expect(formatCents('-9223372036854775808')).toBe('€ -92.233.720.368.547.758,08');
    expect(formatCents('9007199254740993')).toBe('€ 90.071.992.547.409,93');
  });

  it('matches Intl for amounts a float holds', () => {
    const intl = new Intl.NumberFormat('nl-NL', { style: 'currency', currency: 'EUR' });
    for (const cents of [0, 1, 99, 100, 123456, -123456, 98765432]) {
      expect(formatCents(cents).replace(/\s/g, ' ')).toBe(intl.format(cents / 100).replace(/\s/g, ' '));
    }
  });

  it('never throws on junk', () => {
    expect(formatCents('abc')).toBe('€ ?');
    expect(formatCents('1.5')).toBe('€ ?');
  });

  it('signs changes', () => {
    expect(formatChange('1000', 'CREDIT')).toBe('+ € 10,00');
    expect(formatChange('-250', 'DEBIT')).toBe('− € 2,50');
    expect(formatChange('250', 'DEBIT')).toBe('− € 2,50');
  });
});

describe('parseEuros', () => {
  const cents = (s: string) => {
    const r = parseEuros(s);
    return r.ok ? r.cents : r.error;
  };

  it('parses Dutch and plain notations exactly', () => {
    expect(cents('12')).toBe(1200);
    expect(cents('12,5')).toBe(1250);
    expect(cents('12,50')).toBe(1250);
    expect(cents('0,01')).toBe(1);
    expect(cents(',5')).toBe(50);
    expect(cents('1.234,56')).toBe(123456);
    expect(cents('1.234')).toBe(123400);
    expect(cents('1234.56')).toBe(123456);
    expect(cents('0.29')).toBe(29); // 0.29 * 100 is 28.999999999999996 as a float
    expect(cents('€ 1 000,10')).toBe(100010);
    expect(cents('007,00')).toBe(700);
    expect(cents('21474836,47')).toBe(MAX_AMOUNT_CENTS);
  });

  it('refuses what is not an amount', () => {
    for (const bad of ['', 'abc', '1,234', '12,345', '1.2.3', '-5', '0', '0,00', '1e3', '12..5', '1,2,3', '1.23.456']) {
      expect(parseEuros(bad).ok, bad).toBe(false);
    }
    expect(cents('12,')).toBe(1200);
    expect(cents('21474836,48')).toMatch(/at most/);
    expect(cents('99999999999999999999')).toMatch(/too large/);
  });
});
