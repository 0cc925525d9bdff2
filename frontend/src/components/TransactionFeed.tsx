import { useMemo, useState } from 'react';
import { useQuery, useSubscription } from 'urql';
import { graphql } from '../gql';
import type { TransactionsLiveSubscription } from '../gql/graphql';
import { apiError } from '../errors';
import { formatCents, formatChange } from '../money';
import { formatIban } from '../iban';
import { ErrorView } from './ErrorView';

const TransactionsQuery = graphql(`
  query Transactions($iban: String!, $first: Int) {
    transactions(iban: $iban, first: $first) {
      nodes { id iban newBalanceCents changedByCents fromTo description direction at }
    }
  }
`);

const TransactionsLive = graphql(`
  subscription TransactionsLive($iban: String!) {
    transactions(iban: $iban) { id iban newBalanceCents changedByCents fromTo description direction at }
  }
`);

export type Row = TransactionsLiveSubscription['transactions'];

export const FIELDS = ['time', 'counterparty', 'description', 'amount', 'balance'] as const;
export type Field = (typeof FIELDS)[number];
const FIELD_LABELS: Record<Field, string> = {
  time: 'Time',
  counterparty: 'From / to',
  description: 'Description',
  amount: 'Amount',
  balance: 'Balance after',
};

const timeFormat = new Intl.DateTimeFormat('nl-NL', { dateStyle: 'short', timeStyle: 'medium' });

function formatTime(at: string): string {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? at : timeFormat.format(d);
}

interface Props {
  iban: string;
  count: number;
  fields?: readonly Field[];
  title: string;
  /** Called with each live change, newest last (e.g. to update a balance). */
  onLive?: (row: Row) => void;
}

/** An account's transactions: the newest `count` from the API, then live changes on top. */
export function TransactionFeed({ iban, count, fields = FIELDS, title, onLive }: Props) {
  const [{ data, error, fetching }] = useQuery({
    query: TransactionsQuery,
    variables: { iban, first: count },
  });
  // Live rows are kept with the IBAN they belong to, so following another account starts empty.
  const [liveState, setLive] = useState<{ iban: string; rows: Row[] }>({ iban, rows: [] });
  const live = useMemo(() => (liveState.iban === iban ? liveState.rows : []), [liveState, iban]);

  const [sub] = useSubscription({ query: TransactionsLive, variables: { iban } }, (_prev, event) => {
    const row = event.transactions;
    setLive((state) => ({
      iban,
      rows: [row, ...(state.iban === iban ? state.rows : []).filter((r) => r.id !== row.id)].slice(0, 500),
    }));
    onLive?.(row);
    return event;
  });

  const rows = useMemo(() => {
    const seen = new Set<string>();
    const all: Row[] = [];
    for (const r of [...live, ...(data?.transactions.nodes ?? [])]) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      all.push(r);
    }
    return all.slice(0, count);
  }, [live, data, count]);

  const show = (f: Field) => fields.includes(f);
  return (
    <section className="card feed" aria-label={title}>
      <h2>{title}</h2>
      <ErrorView error={error ? apiError(error) : sub.error ? apiError(sub.error) : null} />
      {fetching && rows.length === 0 && <p className="muted">Loading transactions…</p>}
      {!fetching && !error && rows.length === 0 && <p className="muted">No transactions yet.</p>}
      {rows.length > 0 && (
        <div className="table-wrap">
          <table className="transactions" data-testid="transactions">
            <thead>
              <tr>
                {FIELDS.filter(show).map((f) => (
                  <th key={f} scope="col" className={f === 'amount' || f === 'balance' ? 'num' : undefined}>
                    {FIELD_LABELS[f]}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} data-id={r.id}>
                  {show('time') && <td className="nowrap c-time">{formatTime(r.at)}</td>}
                  {show('counterparty') && (
                    <td className="nowrap c-party">{r.fromTo === 'cash' ? 'Cash' : formatIban(r.fromTo)}</td>
                  )}
                  {show('description') && <td className="desc c-desc">{r.description}</td>}
                  {show('amount') && (
                    <td className={`num nowrap c-amount ${r.direction === 'CREDIT' ? 'credit' : 'debit'}`}>
                      {formatChange(r.changedByCents, r.direction)}
                    </td>
                  )}
                  {show('balance') && <td className="num nowrap c-balance">{formatCents(r.newBalanceCents)}</td>}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export { FIELD_LABELS };
