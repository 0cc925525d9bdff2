import { useEffect, useState } from 'react';
import { useClient } from 'urql';
import { graphql } from '../gql';
import { apiError, type ApiError } from '../errors';
import type { BankStatsQuery } from '../gql/graphql';
import { ErrorView } from '../components/ErrorView';
import { Sparkline } from '../components/Sparkline';
import { TransactionFeed } from '../components/TransactionFeed';
import { formatIban } from '../iban';

export const COMPANY_IBAN = 'NL66OPEN0000000000';

const StatsQuery = graphql(`
  query BankStats {
    bankStats { accounts transactions transfers transfersPerSecond }
  }
`);

const integer = new Intl.NumberFormat('nl-NL');
const rate = new Intl.NumberFormat('nl-NL', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

/** BigInt strings grouped the nl-NL way without a float. */
function formatCount(value: string): string {
  return /^\d+$/.test(value) ? value.replace(/\B(?=(\d{3})+(?!\d))/g, '.') : value;
}

function useBankStats() {
  const client = useClient();
  const [stats, setStats] = useState<BankStatsQuery['bankStats'] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [history, setHistory] = useState<number[]>([]);
  useEffect(() => {
    let stopped = false;
    async function poll() {
      const r = await client.query(StatsQuery, {}, { requestPolicy: 'network-only' }).toPromise();
      if (stopped) return;
      if (r.error) return setError(apiError(r.error));
      setError(null);
      if (!r.data) return;
      const next = r.data.bankStats;
      setStats(next);
      setHistory((h) => [...h, next.transfersPerSecond].slice(-60));
    }
    void poll();
    const timer = setInterval(() => void poll(), 1000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [client]);
  return { stats, error, history };
}

export function HomePage() {
  const { stats, error, history } = useBankStats();
  return (
    <>
      <section className="hero">
        <h1>Open Bank</h1>
        <p>Accounts, transfers and balances that update the moment the bank decides.</p>
      </section>
      <section className="card" aria-labelledby="stats-title">
        <h2 id="stats-title">The bank right now</h2>
        <ErrorView error={error} />
        <div className="stats" data-testid="bank-stats">
          <div className="stat">
            <span className="stat-label">Accounts</span>
            <span className="stat-value">{stats ? formatCount(stats.accounts) : '…'}</span>
          </div>
          <div className="stat">
            <span className="stat-label">Transfers</span>
            <span className="stat-value">{stats ? formatCount(stats.transfers) : '…'}</span>
          </div>
          <div className="stat">
            <span className="stat-label">Balance changes</span>
            <span className="stat-value">{stats ? formatCount(stats.transactions) : '…'}</span>
          </div>
          <div className="stat stat-wide">
            <span className="stat-label">Transfers per second (last 10 s)</span>
            <span className="stat-value">{stats ? rate.format(stats.transfersPerSecond) : '…'}</span>
            <Sparkline values={history} label={`Transfers per second, last ${integer.format(history.length)} s`} />
          </div>
        </div>
      </section>
      <TransactionFeed
        iban={COMPANY_IBAN}
        count={15}
        title={`Company account ${formatIban(COMPANY_IBAN)}: live`}
      />
    </>
  );
}
