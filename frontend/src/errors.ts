import type { CombinedError } from 'urql';

export interface ApiError {
  code: string;
  message: string;
  field?: string;
  retryAfterSecs?: number;
}

/** Turns an urql error into the API's code and message (`extensions.code`). */
export function apiError(error: CombinedError | Error | unknown): ApiError {
  const e = error as Partial<CombinedError>;
  const gql = e.graphQLErrors?.[0];
  if (gql) {
    const ext = (gql.extensions ?? {}) as Record<string, unknown>;
    return {
      code: typeof ext.code === 'string' ? ext.code : 'ERROR',
      message: gql.message,
      field: typeof ext.field === 'string' ? ext.field : undefined,
      retryAfterSecs: typeof ext.retryAfterSecs === 'number' ? ext.retryAfterSecs : undefined,
    };
  }
  if (e.networkError) {
    return { code: 'NETWORK', message: 'The bank cannot be reached. Please try again in a moment.' };
  }
  return { code: 'ERROR', message: error instanceof Error ? error.message : String(error) };
}
