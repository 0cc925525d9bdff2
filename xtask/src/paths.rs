//! Where the dev stack keeps things: `.openbank/` in the repository (state, env, logs, data) and a cache
//! folder outside it for downloads (Kafka's jars).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Paths {
    pub root: PathBuf,
    pub home: PathBuf,
    pub cache: PathBuf,
    pub bins: PathBuf,
}

/// The checkout xtask works on. Read at run time (`cargo run` sets `CARGO_MANIFEST_DIR`), not baked in at build
/// time: checkouts that share one target dir share the xtask binary too.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

impl Paths {
    pub fn new(release: bool) -> anyhow::Result<Self> {
        let root = workspace_root();
        let cache =
            match (std::env::var_os("OPENBANK_CACHE"), std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
                (Some(c), _, _) => PathBuf::from(c),
                (None, Some(x), _) => PathBuf::from(x).join("open-bank"),
                (None, None, Some(h)) => PathBuf::from(h).join(".cache").join("open-bank"),
                _ => root.join(".openbank").join("cache"),
            };
        // xtask runs from <target>/debug; the services are built next to it (or in <target>/release).
        let exe = std::env::current_exe()?;
        let profile_dir = exe.parent().expect("binary has a folder").to_path_buf();
        let bins = if release { profile_dir.parent().expect("target dir").join("release") } else { profile_dir };
        Ok(Self { home: root.join(".openbank"), root, cache, bins })
    }

    /// Paths under `root`, for tests.
    #[cfg(test)]
    pub fn at(root: &Path) -> Self {
        let root = root.to_path_buf();
        Self { home: root.join(".openbank"), cache: root.join("cache"), bins: root.join("bin"), root }
    }

    /// Creates `.openbank/` readable by its owner only (0700): it holds passwords, tokens and the database.
    pub fn ensure_home(&self) -> anyhow::Result<()> {
        private_dir(&self.home)
    }

    pub fn state_file(&self) -> PathBuf {
        self.home.join("state.json")
    }
    pub fn env_file(&self) -> PathBuf {
        self.home.join("env")
    }
    pub fn data(&self) -> PathBuf {
        self.home.join("data")
    }
    pub fn logs(&self) -> PathBuf {
        self.home.join("logs")
    }
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }
}

/// Creates `dir` (and missing parents) with mode 0700, and narrows an existing one to 0700.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// A secret generated once from the OS CSPRNG and kept in `.openbank/<name>` (0600, in folders of mode 0700).
pub fn secret(paths: &Paths, name: &str) -> anyhow::Result<String> {
    let file = paths.home.join(name);
    if let Ok(p) = std::fs::read_to_string(&file)
        && !p.trim().is_empty()
    {
        return Ok(p.trim().to_owned());
    }
    let mut buf = [0u8; 18];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let p: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    paths.ensure_home()?;
    if let Some(dir) = file.parent() {
        private_dir(dir)?;
    }
    write_private(&file, &p)?;
    Ok(p)
}

/// Writes a file that holds a secret: the contents go to a new file created with mode 0600, which then replaces
/// `path`, so the secret is never readable by others, not even for a moment.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secrets_and_their_folder_are_private() {
        let base = std::env::temp_dir().join(format!("openbank-paths-{}", std::process::id()));
        let home = base.join(".openbank");
        private_dir(&home).unwrap();
        assert_eq!(mode(&home), 0o700);
        // A folder left with looser permissions by an older version is narrowed.
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&home).unwrap();
        assert_eq!(mode(&home), 0o700);

        let secret = home.join("pg-password");
        write_private(&secret, "s3cret").unwrap();
        assert_eq!((mode(&secret), std::fs::read_to_string(&secret).unwrap().as_str()), (0o600, "s3cret"));
        // Replacing a world-readable file leaves a private one with the new contents.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&secret, "other").unwrap();
        assert_eq!((mode(&secret), std::fs::read_to_string(&secret).unwrap().as_str()), (0o600, "other"));
        assert!(!secret.with_extension("tmp").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
