//! Second-factor verification in-process, beside the password hash in the
//! same run: a TOTP code checked over its ±1 step window (three HMAC-SHA1),
//! a recovery code's keyed digest, a WebAuthn assertion (ES256: the
//! browser's JSON parsed, client data, authenticator data and signature
//! checked by webauthn-rs, as the server does), and argon2id at the
//! default parameters (what a password sign-in pays).
//!
//! cargo bench -p portcullis-authserver --bench factors

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use authserver::crypto::MasterKey;
use authserver::factors::{recovery, totp};
use authserver::password::{Argon2Config, Passwords};
use criterion::{Criterion, criterion_group, criterion_main};
use testkit::SoftPasskey;
use webauthn_rs::WebauthnBuilder;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid};

/// A registered key and an assertion of it, answered by a software
/// authenticator; verifying does not consume the state, so it repeats.
fn webauthn(c: &mut Criterion) {
    let origin = Url::parse("https://auth.test").unwrap();
    let rp = WebauthnBuilder::new("auth.test", &origin)
        .unwrap()
        .build()
        .unwrap();
    let mut key = SoftPasskey::new("https://auth.test", [7; 16]).unwrap();
    let (options, state) = rp
        .start_passkey_registration(Uuid::from_bytes([1; 16]), "alice", "Alice", None)
        .unwrap();
    let answer = key
        .register(&serde_json::to_value(&options).unwrap())
        .unwrap();
    let answer: RegisterPublicKeyCredential = serde_json::from_value(answer).unwrap();
    let passkey = rp.finish_passkey_registration(&answer, &state).unwrap();
    let (options, state) = rp.start_passkey_authentication(&[passkey]).unwrap();
    let answer = key
        .assert(&serde_json::to_value(&options).unwrap())
        .unwrap()
        .to_string();
    c.bench_function("webauthn: verify an assertion (ES256)", |b| {
        b.iter(|| {
            let credential: PublicKeyCredential = serde_json::from_str(&answer).unwrap();
            rp.finish_passkey_authentication(&credential, &state)
                .unwrap()
        });
    });
}

fn bench(c: &mut Criterion) {
    let secret = [7u8; totp::SECRET_BYTES];
    let now = 1_800_000_015;
    // The worst case: the code of the last step tried.
    let code = totp::code(&secret, totp::step_at(now) + 1);
    c.bench_function("totp: verify a code (±1 step)", |b| {
        b.iter(|| totp::matching_step(&secret, &code, now).unwrap());
    });
    let (master, _) = MasterKey::generate().unwrap();
    let digester = master.secret_digester();
    let codes = recovery::generate();
    c.bench_function("recovery code: keyed digest", |b| {
        b.iter(|| recovery::digest(&digester, &codes[3]));
    });
    webauthn(c);
    let passwords = Passwords::new(&Argon2Config::default()).unwrap();
    let hash = passwords.hash("correct horse battery").unwrap();
    let mut group = c.benchmark_group("baseline");
    group.sample_size(10);
    group.bench_function("password: argon2id verify (defaults)", |b| {
        b.iter(|| assert!(passwords.verify("correct horse battery", Some(&hash))));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
