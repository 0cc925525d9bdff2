export function ResultsPage() {
  return (
    <>
      <section className="hero">
        <h1>Load-test results</h1>
        <p>Latency and throughput of the bank under load.</p>
      </section>
      <section className="card">
        <p className="muted">No load-test runs are published by this gateway yet.</p>
      </section>
    </>
  );
}
