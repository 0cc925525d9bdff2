// The signed-in session, kept in sessionStorage (survives a reload, never put in a URL).
import { useSyncExternalStore } from 'react';

export interface StoredSession {
  token: string;
  username: string;
  role: 'CLIENT' | 'EMPLOYEE';
  iban: string;
}

const KEY = 'openbank.session';
const listeners = new Set<() => void>();
let current: StoredSession | null = read();

function read(): StoredSession | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const value = JSON.parse(raw) as Partial<StoredSession>;
    if (typeof value.token !== 'string' || typeof value.username !== 'string') return null;
    return {
      token: value.token,
      username: value.username,
      role: value.role === 'EMPLOYEE' ? 'EMPLOYEE' : 'CLIENT',
      iban: typeof value.iban === 'string' ? value.iban : '',
    };
  } catch {
    return null;
  }
}

export function getSession(): StoredSession | null {
  return current;
}

export function setSession(session: StoredSession | null): void {
  current = session;
  if (session) sessionStorage.setItem(KEY, JSON.stringify(session));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((l) => l());
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useSession(): StoredSession | null {
  return useSyncExternalStore(subscribe, getSession, getSession);
}
