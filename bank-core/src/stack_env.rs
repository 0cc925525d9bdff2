//! `.openbank/env`: the settings `cargo xtask up` writes for the stack it started (the addresses of the ports it
//! picked, the database URL, the company token) as `export KEY='value'` lines a shell can `source`, and the one
//! reader every tool and test uses for it ([`setting`]: the environment first, then the file). Values are single-quoted for the shell (a `'` inside becomes `'\''`),
//! so any value survives the round trip.

use std::collections::BTreeMap;
use std::path::Path;

/// The file's text for `pairs`, after a `# comment` header line.
pub fn render(header: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = format!("# {header}\n");
    for (key, value) in pairs {
        out.push_str(&format!("export {key}={}\n", quote(value)));
    }
    out
}

/// `value` as one single-quoted shell word.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The `KEY=value` (or `export KEY=value`) lines of such a file; comments and other lines are skipped. Understands
/// what [`render`] writes (single quotes with `'\''` inside), double quotes without escapes, and bare words.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| (k.to_owned(), unquote(v.trim())))
        .collect()
}

fn unquote(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => out.extend(chars.by_ref().take_while(|&c| c != '"')),
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// A stack setting: the process environment first (`KEY`, or the file `KEY_FILE` names, as the compose stack hands
/// secrets over), then `<root>/.openbank/env`, then `default`. The one lookup the tests and the tools share.
pub fn setting(root: &Path, key: &str, default: &str) -> String {
    if let Ok(v) = std::env::var(key) {
        return v;
    }
    if let Some(text) = std::env::var_os(format!("{key}_FILE")).and_then(|f| std::fs::read_to_string(f).ok()) {
        return text.strip_suffix('\n').unwrap_or(&text).to_owned();
    }
    let file = std::fs::read_to_string(root.join(".openbank").join("env")).unwrap_or_default();
    parse(&file).remove(key).unwrap_or_else(|| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_render_writes_parse_reads_back() {
        let pairs = [
            ("KAFKA_BROKERS", "localhost:9094,localhost:9096"),
            ("DATABASE_URL", "postgres://u:p@localhost:5433/db"),
            ("ODD", "it's \"quoted\" = $HOME \\ done"),
            ("EMPTY", ""),
        ];
        let text = render("written by a test", &pairs);
        assert!(text.starts_with("# written by a test\n"), "{text}");
        let back = parse(&text);
        assert_eq!(back.len(), pairs.len());
        for (k, v) in pairs {
            assert_eq!(back[k], v, "{k}");
        }
    }

    #[test]
    fn other_spellings_and_noise() {
        let e = parse("# comment\nexport A='x'\nB=\"y=z\"\nC=bare\nnot a line\n=nokey\nexport bad key=1\n");
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            [("A", "x"), ("B", "y=z"), ("C", "bare")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
