//! The verification keys of the key files, each with the algorithms it accepts fixed by the
//! key itself, never by a token.
//!
//! An HMAC secret file is one key for HS256/384/512; an RSA public key PEM one key for
//! RS256/384/512. A JWK set file (`{"keys": [...]}`, or a single JWK) gives one key per
//! usable JWK: its `alg` when it states one (and the algorithm fits the key type and curve),
//! otherwise the algorithms its type implies: RSA RS256/384/512, EC P-256 ES256, EC P-384
//! ES384, OKP Ed25519 EdDSA, oct HS256/384/512. A JWK for encryption (`use: enc`), of an
//! unsupported type or curve (P-521, Ed448) or with an algorithm that does not fit it is
//! skipped with a warning; a set with no usable key is refused. Keys of a JWK set match a
//! token by `kid` as PostgREST's JOSE library does: a token with a `kid` only keys with that
//! `kid`, a token without one every key whose algorithms include the token's.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// One key and what it may verify.
pub struct VerifyKey {
    /// The key's `kid` in its JWK set.
    kid: Option<String>,
    /// Whether a token's `kid` must name this key (JWK set keys) or is not looked at (the
    /// secret file and the PEM, which have no ids).
    by_kid: bool,
    /// The algorithms this key accepts (in `validation.algorithms`), with the claim checks
    /// that are done elsewhere switched off.
    validation: Validation,
    key: DecodingKey,
}

impl VerifyKey {
    fn new(kid: Option<String>, by_kid: bool, algs: &[Algorithm], key: DecodingKey) -> Self {
        let mut validation = Validation::new(algs[0]);
        validation.algorithms = algs.to_vec();
        validation.required_spec_claims.clear();
        // The time claims and `aud` are checked by the caller, for fresh and cached tokens
        // alike.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        VerifyKey {
            kid,
            by_kid,
            validation,
            key,
        }
    }

    /// Whether this key may verify a token whose header states `alg` and `kid`.
    pub fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.validation.algorithms.contains(&alg)
            && (!self.by_kid || kid.is_none() || kid == self.kid.as_deref())
    }

    pub fn key(&self) -> &DecodingKey {
        &self.key
    }

    pub fn validation(&self) -> &Validation {
        &self.validation
    }
}

/// The key of an HMAC secret file.
pub fn hmac_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<VerifyKey>> {
    if bytes.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    Ok(vec![VerifyKey::new(
        None,
        false,
        &HMAC,
        DecodingKey::from_secret(bytes),
    )])
}

/// The key of an RSA public key PEM file.
pub fn rsa_pem(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<VerifyKey>> {
    let key = DecodingKey::from_rsa_pem(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not an RSA public key PEM: {e}", path.display()))?;
    Ok(vec![VerifyKey::new(None, false, &RSA, key)])
}

/// The usable keys of a JWK set file (or of a file holding one JWK).
pub fn jwk_set(path: &Path, bytes: &[u8]) -> anyhow::Result<Vec<VerifyKey>> {
    let doc: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?;
    let jwks = match doc.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.clone(),
        Some(_) => anyhow::bail!("{}: \"keys\" is not an array", path.display()),
        None if doc.get("kty").is_some() => vec![doc],
        None => anyhow::bail!(
            "{} is neither a JWK set ({{\"keys\": [...]}}) nor a JWK",
            path.display()
        ),
    };
    let mut keys = Vec::new();
    for (i, jwk) in jwks.into_iter().enumerate() {
        let kid = jwk.get("kid").and_then(|k| k.as_str()).map(str::to_string);
        match usable(jwk) {
            Ok(key) => keys.push(key),
            Err(why) => tracing::warn!(
                path = %path.display(),
                key = i,
                kid = kid.as_deref().unwrap_or(""),
                "JWK skipped: {why}"
            ),
        }
    }
    if keys.is_empty() {
        anyhow::bail!("{} holds no usable signature key", path.display());
    }
    Ok(keys)
}

/// One JWK as a [`VerifyKey`], or why it cannot be one.
fn usable(jwk: serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|e| format!("not a JWK: {e}"))?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("an encryption key (\"use\": \"enc\")".to_string());
    }
    // What the key's type and curve allow.
    let allowed: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(format!("unsupported curve {:?}", p.curve)),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err(format!("unsupported curve {:?}", p.curve)),
        },
        AlgorithmParameters::OctetKey(_) => &HMAC,
        _ => return Err("unsupported key type".to_string()),
    };
    let algs: Vec<Algorithm> = match jwk.common.key_algorithm {
        Some(stated) => {
            let alg = Algorithm::try_from(stated)
                .map_err(|_| format!("\"alg\" {stated} is not a signature algorithm"))?;
            if !allowed.contains(&alg) {
                return Err(format!("\"alg\" {alg:?} does not fit the key's type"));
            }
            vec![alg]
        }
        // RSA without `alg`: PKCS#1 v1.5, as the PEM flag; PSS only when the key says so.
        None if matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) => RSA.to_vec(),
        None => allowed.to_vec(),
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unreadable key: {e}"))?;
    Ok(VerifyKey::new(jwk.common.key_id.clone(), true, &algs, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn algs(jwk: serde_json::Value) -> Result<Vec<Algorithm>, String> {
        usable(jwk).map(|k| k.validation.algorithms)
    }

    const N: &str = "0etQ2Tg187jb04MWfpuogYGV75IFrQQBxQaGH75eq_FpbkyoLcEpRUEWSbECP2eeFya2yZ9vIO5ScD-lPmovePk4Aa4SzZ8jdjhmAbNykleRPCxMg0481kz6PQhnHRUv3nF5WP479CnObJKqTVdEagVL66oxnX9VhZG9IZA7k0Th5PfKQwrKGyUeTGczpOjaPqbxlunP73j9AfnAt4XCS8epa-n3WGz1j-wfpr_ys57Aq-zBCfqP67UYzNpeI1AoXsJhD9xSDOzvJgFRvc3vm2wjAW4LEMwi48rCplamOpZToIHEPIaPzpveYQwDnB1HFTR1ove9bpKJsHmi-e2uzQ";

    #[test]
    fn the_key_fixes_the_algorithms() {
        let rsa = json!({"kty": "RSA", "n": N, "e": "AQAB"});
        assert_eq!(algs(rsa.clone()).unwrap(), RSA.to_vec());
        let mut ps = rsa.clone();
        ps["alg"] = json!("PS384");
        assert_eq!(algs(ps).unwrap(), vec![Algorithm::PS384]);
        // An RSA key that claims an HMAC or EC algorithm is no key at all.
        for alg in ["HS256", "ES256", "EdDSA"] {
            let mut confused = rsa.clone();
            confused["alg"] = json!(alg);
            assert!(algs(confused).is_err(), "{alg}");
        }
        let mut enc = rsa.clone();
        enc["use"] = json!("enc");
        assert!(algs(enc).is_err());
        let mut oaep = rsa;
        oaep["alg"] = json!("RSA-OAEP");
        assert!(algs(oaep).is_err());
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})).unwrap(),
            vec![Algorithm::ES256]
        );
        assert!(
            algs(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES384"})).is_err()
        );
        assert!(algs(json!({"kty": "EC", "crv": "P-521", "x": x, "y": y})).is_err());
        assert_eq!(
            algs(json!({"kty": "OKP", "crv": "Ed25519", "x": x})).unwrap(),
            vec![Algorithm::EdDSA]
        );
        assert!(algs(json!({"kty": "OKP", "crv": "Ed448", "x": x})).is_err());
        assert_eq!(
            algs(json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap(),
            HMAC.to_vec()
        );
        assert!(algs(json!({"kty": "weird"})).is_err());
    }

    #[test]
    fn a_set_without_a_usable_key_is_refused() {
        let p = Path::new("jwks.json");
        assert!(jwk_set(p, b"{\"keys\": []}").is_err());
        assert!(jwk_set(p, b"{\"keys\": [{\"kty\": \"weird\"}]}").is_err());
        assert!(jwk_set(p, b"not json").is_err());
        assert!(jwk_set(p, b"{\"keys\": 1}").is_err());
        assert!(jwk_set(p, b"[]").is_err());
        let one = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "a"}).to_string();
        let keys = jwk_set(p, one.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].fits(Algorithm::HS256, Some("a")));
        assert!(keys[0].fits(Algorithm::HS256, None));
        assert!(!keys[0].fits(Algorithm::HS256, Some("b")));
        assert!(!keys[0].fits(Algorithm::RS256, Some("a")));
    }
}
