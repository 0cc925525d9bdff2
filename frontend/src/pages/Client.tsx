import { useCallback, useEffect, useId, useState, type FormEvent } from 'react';
import { useMutation, useQuery, useSubscription } from 'urql';
import { graphql } from '../gql';
import type { TransferStatus } from '../gql/graphql';
import { apiError, type ApiError } from '../errors';
import { AuthForm } from '../components/AuthForm';
import { ErrorView } from '../components/ErrorView';
import { SignOutButton } from '../components/SignOutButton';
import { FIELDS, FIELD_LABELS, TransactionFeed, type Field, type Row } from '../components/TransactionFeed';
import { checkIban, formatIban } from '../iban';
import { formatCents, parseEuros } from '../money';
import { setSession, useSession, type StoredSession } from '../session';

const Me = graphql(`
  query Me {
    me { iban balanceCents limitCents }
  }
`);

const Deposit = graphql(`
  mutation Deposit($amountCents: Int!, $key: ID) {
    deposit(amountCents: $amountCents, idempotencyKey: $key) { id status code reason }
  }
`);

const Withdraw = graphql(`
  mutation Withdraw($amountCents: Int!, $key: ID) {
    withdraw(amountCents: $amountCents, idempotencyKey: $key) { id status code reason }
  }
`);

const Transfer = graphql(`
  mutation Transfer($to: String!, $amountCents: Int!, $description: String!, $key: ID) {
    transferMoney(to: $to, amountCents: $amountCents, description: $description, idempotencyKey: $key) {
      id status code reason
    }
  }
`);

const Results = graphql(`
  subscription TransferResults {
    transferResults { id status code reason }
  }
`);

const BUTTONS = [10, 20, 50, 100, 200, 500];
const COUNTS = [5, 10, 20, 50, 100];

interface Outcome {
  id?: string;
  what: string;
  status: TransferStatus | 'ERROR';
  code?: string | null;
  reason?: string | null;
  error?: ApiError;
}

function newKey(): string {
  return crypto.randomUUID();
}

function OutcomeView({ outcome }: { outcome: Outcome | null }) {
  if (!outcome) return null;
  if (outcome.error) return <ErrorView error={outcome.error} />;
  const cls = outcome.status === 'CONFIRMED' ? 'alert-ok' : outcome.status === 'FAILED' ? 'alert-error' : 'alert-info';
  return (
    <div className={`alert ${cls}`} role="status" data-testid="outcome" data-status={outcome.status}>
      <strong>{outcome.what}</strong>:{' '}
      {outcome.status === 'CONFIRMED' && 'done.'}
      {outcome.status === 'PENDING' && 'sent, the bank has not answered yet. The result appears here.'}
      {outcome.status === 'FAILED' && (
        <>
          refused. <span className="code">{outcome.code ?? 'FAILED'}</span>{' '}
          {(outcome.reason ?? '').replace(/^[A-Z_]+:\s*/, '')}
        </>
      )}
    </div>
  );
}

function MoneyButtons({ onOutcome }: { onOutcome: (o: Outcome) => void }) {
  const [, deposit] = useMutation(Deposit);
  const [, withdraw] = useMutation(Withdraw);
  const [busy, setBusy] = useState(false);

  async function run(kind: 'deposit' | 'withdraw', euros: number) {
    setBusy(true);
    const what = `${kind === 'deposit' ? 'Deposit' : 'Withdrawal'} of ${formatCents(euros * 100)}`;
    const vars = { amountCents: euros * 100, key: newKey() };
    const r = kind === 'deposit' ? await deposit(vars) : await withdraw(vars);
    setBusy(false);
    if (r.error) return onOutcome({ what, status: 'ERROR', error: apiError(r.error) });
    const res = r.data && ('deposit' in r.data ? r.data.deposit : 'withdraw' in r.data ? r.data.withdraw : null);
    if (res) onOutcome({ what, ...res });
  }

  return (
    <section className="card" aria-labelledby="cash-title">
      <h2 id="cash-title">Cash</h2>
      <div className="button-row" role="group" aria-label="Deposit">
        <span className="row-label">Deposit</span>
        {BUTTONS.map((e) => (
          <button key={e} type="button" disabled={busy} onClick={() => run('deposit', e)} data-testid={`deposit-${e}`}>
            + € {e}
          </button>
        ))}
      </div>
      <div className="button-row" role="group" aria-label="Withdraw">
        <span className="row-label">Withdraw</span>
        {BUTTONS.map((e) => (
          <button key={e} type="button" disabled={busy} onClick={() => run('withdraw', e)} data-testid={`withdraw-${e}`}>
            − € {e}
          </button>
        ))}
      </div>
    </section>
  );
}

function TransferForm({ ownIban, onOutcome }: { ownIban: string; onOutcome: (o: Outcome) => void }) {
  const id = useId();
  const [to, setTo] = useState('');
  const [amount, setAmount] = useState('');
  const [description, setDescription] = useState('');
  const [touched, setTouched] = useState({ to: false, amount: false });
  const [key, setKey] = useState(newKey);
  const [{ fetching }, transfer] = useMutation(Transfer);

  const ibanCheck = checkIban(to);
  const ibanError = !ibanCheck.ok
    ? ibanCheck.error
    : ibanCheck.iban === ownIban
      ? 'This is your own account'
      : null;
  const parsed = parseEuros(amount);
  const amountError = parsed.ok ? null : parsed.error;
  const descError = description.length > 140 ? 'At most 140 characters' : null;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setTouched({ to: true, amount: true });
    if (ibanError || amountError || descError || !ibanCheck.ok || !parsed.ok) return;
    const what = `Transfer of ${formatCents(parsed.cents)} to ${formatIban(ibanCheck.iban)}`;
    const r = await transfer({ to: ibanCheck.iban, amountCents: parsed.cents, description, key });
    if (r.error) {
      const error = apiError(r.error);
      // UNAVAILABLE: sending again with the same key moves the money at most once.
      if (error.code !== 'UNAVAILABLE' && error.code !== 'NETWORK') setKey(newKey());
      return onOutcome({ what, status: 'ERROR', error });
    }
    setKey(newKey());
    if (r.data) {
      onOutcome({ what, ...r.data.transferMoney });
      if (r.data.transferMoney.status !== 'FAILED') {
        setAmount('');
        setDescription('');
        setTouched({ to: false, amount: false });
      }
    }
  }

  const showIban = (touched.to || to.replace(/\s/g, '').length >= 18) && ibanError;
  const showAmount = touched.amount && amountError;
  return (
    <form className="card" onSubmit={submit} noValidate aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Transfer money</h2>
      <div className="field">
        <label htmlFor={`${id}-to`}>To (IBAN)</label>
        <input
          id={`${id}-to`}
          name="to"
          value={to}
          inputMode="text"
          autoComplete="off"
          spellCheck={false}
          placeholder="NL00 OPEN 0000 0000 00"
          aria-invalid={showIban ? true : undefined}
          aria-describedby={`${id}-to-msg`}
          onChange={(e) => setTo(e.target.value)}
          onBlur={() => setTouched((t) => ({ ...t, to: true }))}
        />
        <p id={`${id}-to-msg`} className={showIban ? 'hint invalid' : ibanCheck.ok && !ibanError ? 'hint valid' : 'hint'}>
          {showIban ? ibanError : ibanCheck.ok && !ibanError ? '✓ Valid IBAN' : 'The check digits are verified as you type'}
        </p>
      </div>
      <div className="field">
        <label htmlFor={`${id}-amount`}>Amount in euros</label>
        <div className="input-prefix">
          <span aria-hidden="true">€</span>
          <input
            id={`${id}-amount`}
            name="amount"
            value={amount}
            inputMode="decimal"
            autoComplete="off"
            placeholder="0,00"
            aria-invalid={showAmount ? true : undefined}
            aria-describedby={`${id}-amount-msg`}
            onChange={(e) => setAmount(e.target.value)}
            onBlur={() => setTouched((t) => ({ ...t, amount: true }))}
          />
        </div>
        <p id={`${id}-amount-msg`} className={showAmount ? 'hint invalid' : 'hint'}>
          {showAmount ? amountError : parsed.ok ? `= ${formatCents(parsed.cents)}` : 'For example 12,50'}
        </p>
      </div>
      <div className="field">
        <label htmlFor={`${id}-desc`}>Description</label>
        <input
          id={`${id}-desc`}
          name="description"
          value={description}
          maxLength={500}
          aria-invalid={descError ? true : undefined}
          aria-describedby={`${id}-desc-msg`}
          onChange={(e) => setDescription(e.target.value)}
        />
        <p id={`${id}-desc-msg`} className={descError ? 'hint invalid' : 'hint'}>
          {descError ?? 'Optional, shown to both sides'}
        </p>
      </div>
      <button type="submit" className="primary" disabled={fetching}>
        {fetching ? 'Sending…' : 'Transfer'}
      </button>
    </form>
  );
}

function Account({ session }: { session: StoredSession }) {
  const [me] = useQuery({ query: Me });
  const [liveBalance, setLiveBalance] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [count, setCount] = useState(10);
  const [fields, setFields] = useState<Field[]>([...FIELDS]);
  const iban = me.data?.me.iban ?? session.iban;

  const onLive = useCallback((row: Row) => setLiveBalance(row.newBalanceCents), []);

  useSubscription({ query: Results }, (_prev, event) => {
    const r = event.transferResults;
    setOutcome((o) => (o && o.id === r.id && o.status === 'PENDING' ? { ...o, ...r } : o));
    return event;
  });

  const balance = liveBalance ?? me.data?.me.balanceCents;
  const meError = me.error ? apiError(me.error) : null;
  const expired = meError?.code === 'UNAUTHENTICATED';
  useEffect(() => {
    if (expired) setSession(null);
  }, [expired]);

  return (
    <>
      <section className="card account-head" aria-labelledby="balance-title">
        <div>
          <p className="muted">
            Signed in as <strong data-testid="username">{session.username}</strong>
          </p>
          <h1 id="balance-title" className="sr-only">
            Your account
          </h1>
          <p className="iban" data-testid="iban" data-iban={iban}>
            {formatIban(iban)}
          </p>
          <p className="balance-label">Balance</p>
          <p className="balance" data-testid="balance" aria-live="polite">
            {balance !== undefined ? formatCents(balance) : '…'}
          </p>
          {me.data && me.data.me.limitCents !== '0' && (
            <p className="muted">Limit {formatCents(me.data.me.limitCents)}</p>
          )}
        </div>
        <SignOutButton />
      </section>
      <ErrorView error={meError} />
      <OutcomeView outcome={outcome} />
      <div className="grid-2">
        <MoneyButtons onOutcome={setOutcome} />
        <TransferForm ownIban={iban} onOutcome={setOutcome} />
      </div>
      <section className="card controls" aria-label="Transaction list options">
        <label className="inline">
          Show{' '}
          <select value={count} onChange={(e) => setCount(Number(e.target.value))} data-testid="show-count">
            {COUNTS.map((c) => (
              <option key={c} value={c}>
                {c}
              </option>
            ))}
          </select>
        </label>
        <fieldset className="toggles">
          <legend>Columns</legend>
          {FIELDS.map((f) => (
            <label key={f} className="inline">
              <input
                type="checkbox"
                checked={fields.includes(f)}
                onChange={(e) =>
                  setFields((fs) => (e.target.checked ? FIELDS.filter((x) => x === f || fs.includes(x)) : fs.filter((x) => x !== f)))
                }
              />{' '}
              {FIELD_LABELS[f]}
            </label>
          ))}
        </fieldset>
      </section>
      {iban && <TransactionFeed iban={iban} count={count} fields={fields} title="Your transactions" onLive={onLive} />}
    </>
  );
}

export function ClientPage() {
  const session = useSession();
  if (session?.role === 'CLIENT') return <Account session={session} />;
  return (
    <>
      <section className="hero">
        <h1>Your account</h1>
        <p>Sign in, or open an account in a few seconds. No paperwork.</p>
      </section>
      {session?.role === 'EMPLOYEE' && (
        <div className="alert alert-info">You are signed in as a bank employee. Sign out on the Employee page to use a client account.</div>
      )}
      <div className="grid-2">
        <AuthForm mode="login" role="CLIENT" title="Sign in" />
        <AuthForm mode="register" role="CLIENT" title="Open an account" />
      </div>
    </>
  );
}
