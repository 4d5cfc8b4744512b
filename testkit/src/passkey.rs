//! A software passkey: an authenticator written from the WebAuthn Level 3
//! and CTAP2 formats (ES256, `none` attestation), for tests and
//! benchmarks that need one without a browser. The browser tests drive
//! Chromium's virtual authenticator; this one lets a test pick what a
//! browser would not let it choose (the AAGUID, the counter of a clone).
//!
//! It answers the options a relying party sends (`{"publicKey": …}`, as
//! JSON) with the credential JSON a browser's `PublicKeyCredential.toJSON()`
//! gives.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_cbor_2::Value as Cbor;
use serde_json::{Value, json};

/// Flags of authenticator data (WebAuthn §6.1).
const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const BACKUP_ELIGIBLE: u8 = 0x08;
const BACKED_UP: u8 = 0x10;
const ATTESTED: u8 = 0x40;

pub struct SoftPasskey {
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    credential_id: Vec<u8>,
    origin: String,
    aaguid: [u8; 16],
    /// The signature counter: reported at registration, and advanced
    /// before each assertion reports it.
    pub counter: u32,
    /// Whether the key is synced (backup eligible and backed up).
    pub synced: bool,
    /// The user handle it stored at registration.
    user_handle: Option<String>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn options_of<'a>(options: &'a Value, what: &str) -> Result<&'a Value, String> {
    options
        .get("publicKey")
        .ok_or_else(|| format!("{what} options without `publicKey`: {options}"))
}

impl SoftPasskey {
    /// A new key for pages served from `origin` (`https://auth.test`),
    /// reporting `aaguid` as its model.
    pub fn new(origin: &str, aaguid: [u8; 16]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|e| format!("key generation: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|e| format!("key: {e}"))?;
        let mut credential_id = vec![0; 16];
        aws_lc_rs::rand::fill(&mut credential_id).map_err(|e| format!("random: {e}"))?;
        Ok(Self {
            key,
            pkcs8: pkcs8.as_ref().to_vec(),
            credential_id,
            origin: origin.to_owned(),
            aaguid,
            counter: 0,
            synced: false,
            user_handle: None,
        })
    }

    /// A clone of this key (same private key and id), as an attacker who
    /// copied it would hold: its counter is wherever the copy was made.
    pub fn cloned(&self) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8)
            .map_err(|e| format!("key: {e}"))?;
        Ok(Self {
            key,
            pkcs8: self.pkcs8.clone(),
            credential_id: self.credential_id.clone(),
            origin: self.origin.clone(),
            aaguid: self.aaguid,
            counter: self.counter,
            synced: self.synced,
            user_handle: self.user_handle.clone(),
        })
    }

    fn flags(&self) -> u8 {
        let synced = if self.synced {
            BACKUP_ELIGIBLE | BACKED_UP
        } else {
            0
        };
        USER_PRESENT | USER_VERIFIED | synced
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    /// RP id hash, flags, counter: what every authenticator data starts with.
    fn auth_data(&self, rp_id: &str, flags: u8) -> Vec<u8> {
        let mut data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        data.push(flags);
        data.extend_from_slice(&self.counter.to_be_bytes());
        data
    }

    /// The public key as a COSE_Key (RFC 9053: EC2, ES256, P-256).
    fn cose_key(&self) -> Result<Vec<u8>, String> {
        let point = self.key.public_key().as_ref();
        let (x, y) = (point[1..33].to_vec(), point[33..65].to_vec());
        let map = Cbor::Map(
            [
                (Cbor::Integer(1), Cbor::Integer(2)),
                (Cbor::Integer(3), Cbor::Integer(-7)),
                (Cbor::Integer(-1), Cbor::Integer(1)),
                (Cbor::Integer(-2), Cbor::Bytes(x)),
                (Cbor::Integer(-3), Cbor::Bytes(y)),
            ]
            .into_iter()
            .collect(),
        );
        serde_cbor_2::to_vec(&map).map_err(|e| format!("cbor: {e}"))
    }

    /// Answers `navigator.credentials.create` for `options`.
    pub fn register(&mut self, options: &Value) -> Result<Value, String> {
        let o = options_of(options, "creation")?;
        let challenge = o["challenge"].as_str().ok_or("no challenge")?;
        let rp_id = o["rp"]["id"].as_str().ok_or("no rp.id")?;
        self.user_handle = o["user"]["id"].as_str().map(str::to_owned);
        let mut auth_data = self.auth_data(rp_id, self.flags() | ATTESTED);
        auth_data.extend_from_slice(&self.aaguid);
        let id_len = u16::try_from(self.credential_id.len()).map_err(|e| e.to_string())?;
        auth_data.extend_from_slice(&id_len.to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&self.cose_key()?);
        let object = Cbor::Map(
            [
                (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
                (Cbor::Text("attStmt".into()), Cbor::Map(Default::default())),
                (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
            ]
            .into_iter()
            .collect(),
        );
        let attestation = serde_cbor_2::to_vec(&object).map_err(|e| format!("cbor: {e}"))?;
        let id = b64(&self.credential_id);
        Ok(json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&self.client_data("webauthn.create", challenge)),
            },
            "extensions": {},
        }))
    }

    /// Answers `navigator.credentials.get` for `options`, with the counter
    /// advanced.
    pub fn assert(&mut self, options: &Value) -> Result<Value, String> {
        let o = options_of(options, "request")?;
        self.counter += 1;
        let challenge = o["challenge"].as_str().ok_or("no challenge")?;
        let rp_id = o["rpId"].as_str().ok_or("no rpId")?;
        let auth_data = self.auth_data(rp_id, self.flags());
        let client_data = self.client_data("webauthn.get", challenge);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(digest(&SHA256, &client_data).as_ref());
        let signature = self
            .key
            .sign(&SystemRandom::new(), &signed)
            .map_err(|e| format!("sign: {e}"))?;
        let id = b64(&self.credential_id);
        Ok(json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.as_ref()),
                "userHandle": self.user_handle,
            },
            "extensions": {},
        }))
    }
}
