//! The web UI in `frontend/`: `up` builds it (`npm ci && npm run build`, skipped when its inputs did not change)
//! before the gateway starts serving `frontend/dist`; `test` runs its lint, type check, unit tests and browser
//! tests (Debian's Chromium driven by playwright-core) against the running stack.
//!
//! Node.js and npm come from Debian (`apt-get install nodejs npm`), Chromium too (`apt-get install chromium`):
//! installed when missing and running as root, like PostgreSQL; otherwise the error names the exact command.

use anyhow::{Context, bail};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::component::step;
use crate::paths::Paths;

const CHROMIUM: &str = "/usr/bin/chromium";

fn dir(paths: &Paths) -> PathBuf {
    paths.root.join("frontend")
}

fn has(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Installs Debian packages as root, or fails with the command to run.
fn apt_install(packages: &[&'static str], why: &str) -> anyhow::Result<()> {
    let needs: Vec<crate::setup::Need> =
        packages.iter().map(|&package| crate::setup::Need { package, what: format!("{package}, for {why}") }).collect();
    crate::setup::install_with_recommends(&needs)
}

/// Node.js and npm, installed from Debian when missing (as root).
pub fn ensure_node() -> anyhow::Result<()> {
    if has("node") && has("npm") {
        return Ok(());
    }
    apt_install(&["nodejs", "npm"], "the web UI")
}

/// Debian's Chromium for the browser tests, installed when missing (as root).
pub fn ensure_chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    apt_install(&["chromium"], "the browser tests")
}

/// Every file the build reads, in a stable order.
fn inputs(frontend: &Path, schema: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                // Generated from the schema by the build itself.
                if !path.ends_with("src/gql") {
                    walk(&path, out);
                }
            } else {
                out.push(path);
            }
        }
    }
    let mut files: Vec<PathBuf> = [
        "package.json",
        "package-lock.json",
        "index.html",
        "graphiql.html",
        "vite.config.ts",
        "codegen.ts",
        "tsconfig.json",
    ]
    .iter()
    .map(|f| frontend.join(f))
    .collect();
    walk(&frontend.join("src"), &mut files);
    walk(&frontend.join("public"), &mut files);
    files.push(schema.to_path_buf());
    files.sort();
    files
}

/// A fingerprint of the files' names (relative to `base`, so a copy of the checkout elsewhere matches) and
/// contents (a change of toolchain only costs one rebuild).
fn fingerprint(base: &Path, files: &[PathBuf]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    for f in files {
        f.strip_prefix(base).unwrap_or(f).hash(&mut h);
        std::fs::read(f).unwrap_or_default().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

fn npm(frontend: &Path, args: &[&str]) -> anyhow::Result<bool> {
    Ok(Command::new("npm")
        .current_dir(frontend)
        .args(args)
        .stdout(Stdio::inherit())
        .status()
        .with_context(|| format!("failed to run npm {}", args.join(" ")))?
        .success())
}

/// `npm ci && npm run build`, skipped when nothing the build reads changed since the last build and `dist/`
/// is there. `npm ci` runs only when `package-lock.json` changed or `node_modules` is missing.
pub fn build(paths: &Paths) -> anyhow::Result<()> {
    let frontend = dir(paths);
    if !frontend.join("package.json").exists() {
        return Ok(());
    }
    let schema = paths.root.join("graphql-endpoint").join("schema.graphql");
    let stamp = paths.home.join("frontend.hash");
    let lock_stamp = paths.home.join("frontend-lock.hash");
    let now = fingerprint(&paths.root, &inputs(&frontend, &schema));
    let lock = fingerprint(&paths.root, &[frontend.join("package-lock.json")]);
    let built = frontend.join("dist").join("index.html").exists();
    if built && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == now) {
        step("frontend", "up to date (frontend/dist)");
        return Ok(());
    }
    ensure_node()?;
    let installed =
        frontend.join("node_modules").exists() && std::fs::read_to_string(&lock_stamp).is_ok_and(|s| s.trim() == lock);
    if !installed {
        step("frontend", "npm ci");
        if !npm(&frontend, &["ci", "--no-audit", "--no-fund"])? {
            bail!("`npm ci` failed in frontend/");
        }
        std::fs::write(&lock_stamp, &lock)?;
    }
    step("frontend", "npm run build");
    let _ = std::fs::remove_file(&stamp);
    if !npm(&frontend, &["run", "build"])? {
        bail!("`npm run build` failed in frontend/");
    }
    std::fs::write(&stamp, &now)?;
    Ok(())
}

/// What the frontend's tests counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u32,
    pub failed: u32,
}

/// Vitest's `Tests  12 passed | 1 failed (13)` line (colours stripped).
fn parse_vitest(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines().map(crate::proc::strip_ansi) {
        let Some(rest) = line.trim().strip_prefix("Tests") else { continue };
        for part in rest.split(['|', '(']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                match (n.parse::<u32>(), what) {
                    (Ok(n), "passed") => c.passed += n,
                    (Ok(n), "failed") => c.failed += n,
                    _ => {}
                }
            }
        }
    }
    c
}

/// node's test runner: `# pass 9` and `# fail 0`.
fn parse_node_test(output: &str) -> Counts {
    let mut c = Counts::default();
    for line in output.lines().map(crate::proc::strip_ansi) {
        let line = line.trim();
        if let Some(n) = line.strip_prefix("# pass ") {
            c.passed += n.trim().parse().unwrap_or(0);
        } else if let Some(n) = line.strip_prefix("# fail ") {
            c.failed += n.trim().parse().unwrap_or(0);
        }
    }
    c
}

/// Runs a command in `frontend/`, its output passed through and returned.
fn run_captured(
    frontend: &Path,
    program: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> anyhow::Result<(bool, String)> {
    let mut cmd = Command::new(program);
    cmd.current_dir(frontend).args(args).env("FORCE_COLOR", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::proc::run_teeing(&mut cmd)
}

/// Lint, type check, unit tests and browser tests of the web UI against the running stack. Returns the named
/// checks (lint, typecheck) and the tests' counts.
pub fn test(paths: &Paths, gateway: &str) -> anyhow::Result<(Vec<(String, bool)>, Counts)> {
    let frontend = dir(paths);
    build(paths)?;
    ensure_chromium()?;
    let mut checks = Vec::new();
    for (name, script) in
        [("frontend: npm run lint (ESLint)", "lint"), ("frontend: npm run typecheck (tsc)", "typecheck")]
    {
        eprintln!("\n==> {name}");
        checks.push((name.to_string(), npm(&frontend, &["run", script])?));
    }
    let mut counts = Counts::default();
    eprintln!("\n==> frontend: vitest");
    let (ok, out) = run_captured(&frontend, "npx", &["vitest", "run"], &[])?;
    let unit = parse_vitest(&out);
    counts.passed += unit.passed;
    counts.failed += unit.failed + u32::from(!ok && unit.failed == 0);

    eprintln!("\n==> frontend: browser tests (Chromium, against the running stack)");
    let password = std::fs::read_to_string(paths.home.join("employee-password")).ok();
    let browser = browser_tests(paths, gateway, password.as_deref(), &paths.logs().join("frontend-screenshots"))?;
    counts.passed += browser.passed;
    counts.failed += browser.failed;
    Ok((checks, counts))
}

/// The browser tests alone (Chromium against the web UI the gateway at `gateway` serves), with the employee's
/// password when known; screenshots go to `screenshots`.
pub fn browser_tests(
    paths: &Paths,
    gateway: &str,
    employee_password: Option<&str>,
    screenshots: &Path,
) -> anyhow::Result<Counts> {
    let frontend = dir(paths);
    let mut env = vec![
        ("SCREENSHOT_DIR", screenshots.display().to_string()),
        ("OPENBANK_UI_URL", gateway.to_owned()),
        ("OPENBANK_GATEWAY_URL", gateway.to_owned()),
    ];
    if let Some(password) = employee_password {
        env.push(("EMPLOYEE_PASSWORD", password.trim().to_string()));
    }
    let (ok, out) = run_captured(&frontend, "node", &["--test", "tests/browser/"], &env)?;
    let mut counts = parse_node_test(&out);
    counts.failed += u32::from(!ok && counts.failed == 0);
    eprintln!("screenshots: {}", screenshots.display());
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_vitest_and_node_test_output() {
        let vitest =
            "\u{1b}[2m      Tests \u{1b}[22m \u{1b}[1m\u{1b}[32m11 passed\u{1b}[39m\u{1b}[22m | 2 failed (13)\n";
        assert_eq!(parse_vitest(vitest), Counts { passed: 11, failed: 2 });
        assert_eq!(
            parse_vitest(" Test Files  2 passed (2)\n      Tests  11 passed (11)\n"),
            Counts { passed: 11, failed: 0 }
        );
        let node = "# tests 9\n# suites 1\n# pass 8\n# fail 1\n# cancelled 0\n";
        assert_eq!(parse_node_test(node), Counts { passed: 8, failed: 1 });
        assert_eq!(parse_node_test("nothing"), Counts::default());
    }

    #[test]
    fn the_fingerprint_follows_contents() {
        let base = std::env::temp_dir().join(format!("openbank-frontend-{}", std::process::id()));
        std::fs::create_dir_all(base.join("src/gql")).unwrap();
        std::fs::write(base.join("package-lock.json"), "{}").unwrap();
        std::fs::write(base.join("src/main.tsx"), "a").unwrap();
        std::fs::write(base.join("src/gql/graphql.ts"), "generated").unwrap();
        let schema = base.join("schema.graphql");
        std::fs::write(&schema, "type Query").unwrap();
        let files = inputs(&base, &schema);
        let first = fingerprint(&base, &files);
        assert_eq!(first, fingerprint(&base, &inputs(&base, &schema)));
        // Generated files do not count; sources and the schema do.
        std::fs::write(base.join("src/gql/graphql.ts"), "regenerated").unwrap();
        assert_eq!(first, fingerprint(&base, &inputs(&base, &schema)));
        std::fs::write(base.join("src/main.tsx"), "b").unwrap();
        let second = fingerprint(&base, &inputs(&base, &schema));
        assert_ne!(first, second);
        std::fs::write(&schema, "type Query2").unwrap();
        assert_ne!(second, fingerprint(&base, &inputs(&base, &schema)));
        // A copy of the checkout elsewhere has the same fingerprint.
        let copy = base.with_extension("copy");
        let _ = std::fs::remove_dir_all(&copy);
        assert!(Command::new("cp").arg("-a").arg(&base).arg(&copy).status().unwrap().success());
        let (here, there) = (inputs(&base, &schema), inputs(&copy, &copy.join("schema.graphql")));
        assert_eq!(fingerprint(&base, &here), fingerprint(&copy, &there));
        std::fs::remove_dir_all(&copy).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
