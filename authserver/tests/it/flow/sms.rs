//! Text-message codes through the webhook sender to a receiver this test
//! runs: the signature, a retry after a failed delivery, enrolment of a
//! number, sign-in with its code, `amr`, the attempts per code (a wrong
//! code or a reload sends nothing new) and the send limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::*;

const SECRET: &str = "webhook-secret-0123456789";

/// One delivery: its headers (names in lower case) and body.
type Delivery = (Vec<(String, String)>, String);

/// A webhook that answers the first delivery with a 503, then 200s; keeps
/// what it was sent.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let seen = got.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let Some((k, v)) = line.trim_end().split_once(": ") else {
                        break;
                    };
                    headers.push((k.to_ascii_lowercase(), v.to_owned()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock()
                    .unwrap()
                    .push((headers, String::from_utf8(body).unwrap()));
                let status = if n == 0 {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self { url, got }
    }

    /// The code in the latest message, after checking its signature.
    fn last_code(&self) -> String {
        let got = self.got.lock().unwrap();
        let (headers, body) = got.last().expect("a message was sent");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        };
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
        let signed = format!("{}.{body}", header("x-portcullis-timestamp"));
        let want: String = aws_lc_rs::hmac::sign(&key, signed.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(header("x-portcullis-signature"), format!("sha256={want}"));
        let message: Value = serde_json::from_str(body).unwrap();
        assert_eq!(message["to"], "+442079460958");
        let text = message["message"].as_str().unwrap();
        let at = text.find(|c: char| c.is_ascii_digit()).unwrap();
        text[at..at + 6].to_owned()
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

#[tokio::test]
async fn a_verified_phone_receives_sign_in_codes_through_the_signed_webhook() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_SENDER", "webhook"),
        (
            "PORTCULLIS_AUTHSERVER__MFA__SMS_WEBHOOK_URL",
            receiver.url.as_str(),
        ),
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_WEBHOOK_SECRET", SECRET),
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_PER_HOUR", "3"),
        // Room for a code's five attempts before the account locks.
        (
            "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ACCOUNT",
            "20",
        ),
        (
            "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ADDRESS",
            "20",
        ),
    ];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let login = browser.get("/account").await;
    let resumed = log_in(&mut browser, &login, "demo", &password(&server)).await;
    let page = browser.get(resumed.location()).await;
    let csrf = page.hidden("csrf");
    let bad = browser
        .post(
            "/account/sms",
            &[("csrf", &csrf), ("label", "Phone"), ("phone", "0207 946")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("international form"), "{}", bad.body);
    let sent = browser
        .post(
            "/account/sms",
            &[
                ("csrf", &csrf),
                ("label", "Phone"),
                ("phone", "+44 20 7946 0958"),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("+•••••58"), "{}", sent.body);
    assert_eq!(
        receiver.count(),
        2,
        "the first delivery failed and was retried"
    );
    let code = receiver.last_code();
    let ceremony = sent.hidden("ceremony");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = browser
        .post(
            "/account/sms-confirm",
            &[("csrf", &csrf), ("ceremony", &ceremony), ("code", wrong)],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let added = browser
        .post(
            "/account/sms-confirm",
            &[("csrf", &csrf), ("ceremony", &ceremony), ("code", &code)],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(
        added.body.contains("recovery-codes"),
        "a first factor brings recovery codes"
    );

    // Signing in: the password, then the code sent to the number.
    let mut other = Browser::new(&server.url(""));
    let login = other
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let step = log_in(&mut other, &login, "demo", &password(&server)).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert_eq!(step.hidden("method"), "sms");
    let code = receiver.last_code();
    let resumed = other
        .post(
            "/login/factor",
            &[
                ("csrf", &step.hidden("csrf")),
                ("method", "sms"),
                ("ceremony", &step.hidden("ceremony")),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let mut page = other.get(resumed.location()).await;
    if page.status == 200 {
        page = consent(&mut other, &page, "allow").await;
    }
    let (status, tokens) = exchange(&server, &page.redirect_param("code").unwrap(), VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let id = claims_of(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "sms", "mfa"]));

    // The third code: shown again and answered wrongly, it is asked for
    // again, never sent again.
    let mut third = Browser::new(&server.url(""));
    let login = third
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let step = log_in(&mut third, &login, "demo", &password(&server)).await;
    assert_eq!(step.status, 200, "the third code: {}", step.body);
    let sent = receiver.count();
    let code = receiver.last_code();
    let ceremony = step.hidden("ceremony");
    let reloaded = third.get("/login/factor?method=sms").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(reloaded.hidden("ceremony"), ceremony);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 1..=5 {
        let refused = third
            .post(
                "/login/factor",
                &[
                    ("csrf", &step.hidden("csrf")),
                    ("method", "sms"),
                    ("ceremony", &ceremony),
                    ("code", wrong),
                ],
            )
            .await;
        assert_eq!(refused.status, 401, "attempt {attempt}: {}", refused.body);
        assert_eq!(refused.hidden("ceremony"), ceremony, "attempt {attempt}");
    }
    assert_eq!(receiver.count(), sent, "nothing was sent again");
    // Five wrong attempts spend the code: the right one no longer signs
    // in, and the new code it would take is over the hourly limit.
    let spent = third
        .post(
            "/login/factor",
            &[
                ("csrf", &step.hidden("csrf")),
                ("method", "sms"),
                ("ceremony", &ceremony),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(spent.status, 400, "{}", spent.body);
    assert!(spent.body.contains("too many codes"), "{}", spent.body);
    let resend = third.get("/login/factor?method=sms&resend=1").await;
    assert_eq!(resend.status, 400, "{}", resend.body);
    assert!(resend.body.contains("too many codes"), "{}", resend.body);
    assert_eq!(receiver.count(), sent);

    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    let enrol = events.iter().find(|e| e.action == "mfa.sms.enrol").unwrap();
    assert_eq!(
        enrol.detail["phone"], "+•••••58",
        "the number is masked in the log"
    );
    assert!(
        !server.logs().contains("7946"),
        "the number never reaches the log"
    );
}

#[tokio::test]
async fn a_code_past_its_lifetime_is_refused() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_SENDER", "webhook"),
        (
            "PORTCULLIS_AUTHSERVER__MFA__SMS_WEBHOOK_URL",
            receiver.url.as_str(),
        ),
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_WEBHOOK_SECRET", SECRET),
        ("PORTCULLIS_AUTHSERVER__MFA__SMS_CODE_SECONDS", "1"),
    ];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = super::mfa::account(&mut browser, &server).await;
    let csrf = page.hidden("csrf");
    let sent = browser
        .post(
            "/account/sms",
            &[
                ("csrf", &csrf),
                ("label", "Phone"),
                ("phone", "+44 20 7946 0958"),
            ],
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let code = receiver.last_code();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let late = browser
        .post(
            "/account/sms-confirm",
            &[
                ("csrf", &csrf),
                ("ceremony", &sent.hidden("ceremony")),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(late.status, 400, "{}", late.body);
    let page = browser.get("/account").await;
    assert!(page.body.contains("No second factor yet."), "{}", page.body);
}
