// IBAN checks done while the user types (ISO 13616: country, check digits, mod 97 = 1).

const LENGTHS: Record<string, number> = {
  AD: 24, AT: 20, BE: 16, BG: 22, CH: 21, CY: 28, CZ: 24, DE: 22, DK: 18, EE: 20, ES: 24, FI: 18,
  FR: 27, GB: 22, GR: 27, HR: 21, HU: 28, IE: 22, IS: 26, IT: 27, LI: 21, LT: 20, LU: 20, LV: 21,
  MC: 27, MT: 31, NL: 18, NO: 15, PL: 28, PT: 25, RO: 24, SE: 24, SI: 19, SK: 24, SM: 27,
};

/** Removes spaces and upper-cases: the form the API expects. */
export function normalizeIban(input: string): string {
  return input.replace(/[\s\u00a0]/g, '').toUpperCase();
}

/** Groups an IBAN in fours for display: `NL66 OPEN 0000 0000 00`. */
export function formatIban(iban: string): string {
  return normalizeIban(iban).replace(/(.{4})(?=.)/g, '$1 ');
}

/** The remainder mod 97 of the IBAN's numeric form, computed digit by digit (no big numbers). */
function mod97(rearranged: string): number {
  let rest = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? code - 55 : code - 48;
    rest = value >= 10 ? (rest * 100 + value) % 97 : (rest * 10 + value) % 97;
  }
  return rest;
}

export type IbanCheck = { ok: true; iban: string } | { ok: false; error: string };

export function checkIban(input: string): IbanCheck {
  const iban = normalizeIban(input);
  if (iban === '') return { ok: false, error: 'Enter the IBAN of the receiving account' };
  if (!/^[A-Z0-9]*$/.test(iban)) return { ok: false, error: 'An IBAN holds only letters and digits' };
  if (!/^[A-Z]{2}/.test(iban)) return { ok: false, error: 'An IBAN starts with a two-letter country code' };
  if (!/^[A-Z]{2}\d{2}/.test(iban.slice(0, 4)) && iban.length >= 4) {
    return { ok: false, error: 'The third and fourth characters are check digits' };
  }
  const expected = LENGTHS[iban.slice(0, 2)];
  if (expected !== undefined && iban.length !== expected) {
    return {
      ok: false,
      error: `A ${iban.slice(0, 2)} IBAN has ${expected} characters (this one has ${iban.length})`,
    };
  }
  if (expected === undefined && (iban.length < 15 || iban.length > 34)) {
    return { ok: false, error: 'An IBAN has 15 to 34 characters' };
  }
  if (mod97(iban.slice(4) + iban.slice(0, 4)) !== 1) {
    return { ok: false, error: 'The check digits do not match: please check for a typo' };
  }
  return { ok: true, iban };
}
