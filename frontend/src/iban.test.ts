import { describe, expect, it } from 'vitest';
import { checkIban, formatIban, normalizeIban } from './iban';

describe('checkIban', () => {
  it('accepts valid IBANs, with spaces and in lower case', () => {
    expect(checkIban('NL66OPEN0000000000')).toEqual({ ok: true, iban: 'NL66OPEN0000000000' });
    expect(checkIban('nl91 abna 0417 1643 00')).toEqual({ ok: true, iban: 'NL91ABNA0417164300' });
    expect(checkIban('DE89 3704 0044 0532 0130 00').ok).toBe(true);
    expect(checkIban('GB82WEST12345698765432').ok).toBe(true);
  });

  it('finds a typo through the check digits', () => {
    const r = checkIban('NL91ABNA0417164301');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/check digits/);
    expect(checkIban('NL67OPEN0000000000').ok).toBe(false);
  });

  it('explains what is wrong', () => {
    const error = (s: string) => {
      const r = checkIban(s);
      return r.ok ? 'ok' : r.error;
    };
    expect(error('')).toMatch(/Enter/);
    expect(error('12')).toMatch(/country/);
    expect(error('NL66OPEN000000000')).toMatch(/18 characters/);
    expect(error('NL66-OPEN')).toMatch(/letters and digits/);
    expect(error('NLXX')).toMatch(/check digits/);
    expect(error('NL66ÖPEN0000000000')).toMatch(/letters and digits/);
  });

  it('normalizes and groups', () => {
    expect(normalizeIban(' nl66 open 0000 0000 00 ')).toBe('NL66OPEN0000000000');
    expect(formatIban('NL66OPEN0000000000')).toBe('NL66 OPEN 0000 0000 00');
  });
});
