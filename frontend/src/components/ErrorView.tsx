import type { ApiError } from '../errors';

export function ErrorView({ error }: { error: ApiError | null | undefined }) {
  if (!error) return null;
  return (
    <div className="alert alert-error" role="alert">
      <span className="code">{error.code}</span> {error.message}
      {error.retryAfterSecs !== undefined && <> (try again in {error.retryAfterSecs} s)</>}
    </div>
  );
}
