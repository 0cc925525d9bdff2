//! Password hashing: Argon2id in the standard PHC string format, computed with working memory that each
//! password-hash thread (see [`crate::limits::HashPool`]) keeps and reuses.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, SaltString};
use std::sync::OnceLock;

/// Argon2id at 9 MiB and 4 passes (one of OWASP's equivalent Argon2id settings, with the 19 MiB / 2 passes of
/// the crate's default: less memory per hash, the same work), salt from the OS CSPRNG. Verification reads the
/// parameters from the stored hash, so hashes made with other settings still verify.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    let params =
        argon2::Params::new(9 * 1024, 4, 1, Some(32)).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
    let mut out = [0u8; 32];
    hash_with_reused_memory(&argon, password.as_bytes(), &salt, &mut out).map_err(|e| anyhow::anyhow!("hash: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: argon2::password_hash::ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(argon2::password_hash::Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    let check = || -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
        let version = argon2::Version::try_from(parsed.version.unwrap_or(0x13)).ok()?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let mut out = vec![0u8; expected.len()];
        hash_with_reused_memory(&Argon2::new(algorithm, version, params), password.as_bytes(), salt, &mut out).ok()?;
        // `Output` compares in constant time.
        Some(argon2::password_hash::Output::new(&out).ok()? == expected)
    };
    check().unwrap_or(false)
}

thread_local! {
    /// Argon2's working memory, kept by each password-hash thread and reused: allocating 9 MiB per hash left
    /// freed buffers fragmented in glibc's arenas, and the gateway grew by megabytes with every login.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn hash_with_reused_memory(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    ARGON2_MEMORY.with_borrow_mut(|blocks| {
        let needed = argon.params().block_count();
        if blocks.len() != needed {
            *blocks = vec![argon2::Block::default(); needed];
        }
        argon.hash_password_into_with_memory(password, salt, out, blocks.as_mut_slice())
    })
}

/// A hash to verify against when the user does not exist, so a login takes as long either way.
pub fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_verify_and_read_as_standard_argon2id() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
        // The argon2 crate's own verifier agrees, so the stored format is the standard one.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
    }

    #[test]
    fn hashes_made_with_other_settings_still_verify() {
        // The crate's default (19 MiB, 2 passes): what earlier versions stored.
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let old = Argon2::default().hash_password(b"an older password", &salt).unwrap().to_string();
        assert!(verify_password("an older password", &old));
        assert!(!verify_password("another password", &old));
        for garbage in ["", "$argon2id$", "not a hash", "$argon2id$v=19$m=9216,t=4,p=1$!!$!!"] {
            assert!(!verify_password("x", garbage), "{garbage}");
        }
    }
}
