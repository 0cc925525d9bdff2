// All money in the UI goes through this module. Amounts arrive from the API as BigInt decimal
// strings (cents) and are formatted with integer arithmetic only, never through a float.

/** The largest amount the API's `Int` arguments carry, in cents. */
export const MAX_AMOUNT_CENTS = 2_147_483_647;

function groupThousands(digits: string): string {
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += '.';
    out += digits[i];
  }
  return out;
}

/** Formats cents (a BigInt string, bigint or safe integer) the nl-NL way: `€ 1.234,56`, `€ -0,05`. */
export function formatCents(cents: string | bigint | number): string {
  let value: bigint;
  try {
    value = typeof cents === 'bigint' ? cents : BigInt(cents);
  } catch {
    return '€ ?';
  }
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const euros = abs / 100n;
  const rest = (abs % 100n).toString().padStart(2, '0');
  return `€ ${negative ? '-' : ''}${groupThousands(euros.toString())},${rest}`;
}

/** Formats a change with the sign of its direction: `+ € 10,00` (credit) / `− € 5,00` (debit). */
export function formatChange(cents: string, direction: 'CREDIT' | 'DEBIT'): string {
  const text = formatCents(cents).replace('-', '');
  return direction === 'DEBIT' ? `− ${text}` : `+ ${text}`;
}

export type ParsedAmount = { ok: true; cents: number } | { ok: false; error: string };

/**
 * Parses an amount typed in euros into whole cents, exactly (string arithmetic, no float).
 * Accepts `12`, `12,5`, `12,50`, `1.234,56`, `1234.56` (one dot with one or two decimals), and a leading `€`.
 */
export function parseEuros(input: string): ParsedAmount {
  const text = input.replace(/[\s\u00a0€]/g, '');
  if (text === '') return { ok: false, error: 'Enter an amount' };
  if (text.startsWith('-')) return { ok: false, error: 'The amount must be positive' };
  let whole: string;
  let fraction: string;
  let m: RegExpMatchArray | null;
  if ((m = /^(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d*))?$/.exec(text))) {
    // Dutch: dots group thousands, the comma separates cents.
    whole = (m[1] ?? '').replace(/\./g, '');
    fraction = m[2] ?? '';
  } else if ((m = /^(\d+)\.(\d{1,2})$/.exec(text))) {
    whole = m[1] ?? '';
    fraction = m[2] ?? '';
  } else if ((m = /^,(\d+)$/.exec(text))) {
    whole = '0';
    fraction = m[1] ?? '';
  } else {
    return { ok: false, error: 'Use digits with a comma before the cents, e.g. 12,50' };
  }
  if (fraction.length > 2) return { ok: false, error: 'At most two digits after the comma' };
  const digits = (whole.replace(/^0+(?=\d)/, '') || '0') + fraction.padEnd(2, '0');
  if (digits.length > 12) return { ok: false, error: 'The amount is too large' };
  const cents = Number(digits); // at most 12 digits: an exact integer
  if (cents === 0) return { ok: false, error: 'The amount must be more than € 0,00' };
  if (cents > MAX_AMOUNT_CENTS) {
    return { ok: false, error: `The amount can be at most ${formatCents(MAX_AMOUNT_CENTS)}` };
  }
  return { ok: true, cents };
}
