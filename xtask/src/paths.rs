//! Where the dev stack keeps things: `.openbank/` in the repository (state, env, logs, data) and a cache
//! folder outside it for downloads (Kafka's jars).

use std::path::PathBuf;

pub struct Paths {
    pub root: PathBuf,
    pub home: PathBuf,
    pub cache: PathBuf,
    pub bins: PathBuf,
}

/// The checkout xtask works on. Read at run time (`cargo run` sets `CARGO_MANIFEST_DIR`), not baked in at build
/// time: checkouts that share one target dir share the xtask binary too.
fn workspace_root() -> PathBuf {
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
