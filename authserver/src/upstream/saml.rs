//! SAML 2.0 identity providers (`kind = "saml"`): the IdP's metadata from
//! a file or URL, our service provider's metadata, the AuthnRequest sent by
//! HTTP-Redirect and the Response received by HTTP-POST.
//!
//! Signatures are samael's (xmlsec): every signature must verify against
//! the IdP's certificates and only the content they cover survives to be
//! read, so a wrapped, modified or unsigned assertion is never what is
//! read. samael checks the issuer, `Destination`, `Recipient`,
//! `InResponseTo`, the times and a stated audience; this module refuses
//! what it would let through: metadata without a signing certificate
//! (samael would then read unsigned responses), SHA-1, a response with
//! other than exactly one assertion, a DTD, a signature whose reference or
//! transforms would make xmlsec fetch or compute anything before the
//! signature is checked, an assertion without an audience restriction
//! naming us, a NameID of another format than the one configured. Replay
//! is `federation`'s (the assertion id, kept while it could be accepted).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::{
    EntityDescriptor, HTTP_POST_BINDING, HTTP_REDIRECT_BINDING, IndexedEndpoint, SpSsoDescriptor,
};
use samael::schema::Assertion;
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};
use samael::traits::ToXml;

use crate::config::ProviderConfig;
use crate::crypto::random_token;
use crate::model::UpstreamIdentity as Identity;

const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// The transforms and canonicalizations a SAML signature uses; any other
/// (XPath, XSLT, base64...) is work or fetching before verification.
const TRANSFORMS: [&[u8]; 5] = [
    b"http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    b"http://www.w3.org/2001/10/xml-exc-c14n#",
    b"http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    b"http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    b"http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
];

/// SHA-2 only: a SHA-1 signature can be forged for chosen content.
const ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Our entity id at the IdP.
pub fn entity_id(cfg: &ProviderConfig, issuer: &str) -> String {
    cfg.entity_id
        .clone()
        .unwrap_or_else(|| format!("{issuer}/login/federated/{}/metadata", cfg.id))
}

/// Reads the IdP's metadata and makes our service provider for it.
pub async fn load(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    issuer: &str,
    acs_url: &str,
) -> Result<ServiceProvider, String> {
    let text = match (&cfg.metadata_url, &cfg.metadata_file) {
        (Some(url), _) => {
            let response = http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("IdP metadata at {url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("IdP metadata at {url}: HTTP {}", response.status()));
            }
            response
                .text()
                .await
                .map_err(|e| format!("IdP metadata at {url}: {e}"))?
        }
        (None, Some(path)) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| format!("IdP metadata file {}: {e}", path.display()))?,
        (None, None) => return Err("no IdP metadata configured".into()),
    };
    service_provider(cfg, issuer, acs_url, &text)
}

/// Our service provider for the IdP whose metadata is `text`.
fn service_provider(
    cfg: &ProviderConfig,
    issuer: &str,
    acs_url: &str,
    text: &str,
) -> Result<ServiceProvider, String> {
    let idp: EntityDescriptor = text
        .parse()
        .map_err(|e| format!("IdP metadata is not a SAML EntityDescriptor: {e}"))?;
    if idp.entity_id.as_deref().is_none_or(str::is_empty) {
        return Err("IdP metadata has no entityID".into());
    }
    let sp = ServiceProviderBuilder::default()
        .entity_id(entity_id(cfg, issuer))
        .acs_url(acs_url.to_owned())
        .authn_name_id_format(cfg.name_id_format.clone())
        .idp_metadata(idp)
        .allowed_signature_algorithms(ALGORITHMS.to_vec())
        .build()
        .map_err(|e| e.to_string())?;
    if sp.sso_binding_location(HTTP_REDIRECT_BINDING).is_none() {
        return Err("IdP metadata has no SingleSignOnService for HTTP-Redirect".into());
    }
    // Without a signing certificate samael would take unsigned responses.
    match sp.idp_signing_certs() {
        Ok(Some(certs)) if !certs.is_empty() => Ok(sp),
        Ok(_) => Err("IdP metadata has no signing certificate".into()),
        Err(e) => Err(format!("IdP metadata: {e}")),
    }
}

/// Our metadata, for the IdP's administrator: from our configuration
/// alone (it must be there while the IdP is not).
pub fn metadata(cfg: &ProviderConfig, issuer: &str, acs_url: &str) -> Result<String, String> {
    let descriptor = EntityDescriptor {
        entity_id: Some(entity_id(cfg, issuer)),
        sp_sso_descriptors: Some(vec![SpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            authn_requests_signed: Some(false),
            want_assertions_signed: Some(true),
            name_id_formats: Some(vec![cfg.name_id_format.clone()]),
            assertion_consumer_services: vec![IndexedEndpoint {
                binding: HTTP_POST_BINDING.into(),
                location: acs_url.to_owned(),
                index: 0,
                is_default: Some(true),
                ..IndexedEndpoint::default()
            }],
            ..SpSsoDescriptor::default()
        }]),
        ..EntityDescriptor::default()
    };
    descriptor.to_string().map_err(|e| e.to_string())
}

/// An AuthnRequest on its way: its id (the answer's `InResponseTo`) and
/// where the browser goes with it.
#[derive(Debug)]
pub struct Request {
    pub id: String,
    pub location: String,
}

/// An AuthnRequest by HTTP-Redirect, `relay_state` coming back with the
/// answer; `fresh`: the IdP must sign the person in anew (ForceAuthn).
pub fn request(sp: &ServiceProvider, relay_state: &str, fresh: bool) -> Result<Request, String> {
    let sso = sp
        .sso_binding_location(HTTP_REDIRECT_BINDING)
        .ok_or("IdP metadata has no SingleSignOnService for HTTP-Redirect")?;
    let mut request = sp
        .make_authentication_request(&sso)
        .map_err(|e| e.to_string())?;
    // An XML id starts with a letter or `_`; samael's own has 32 bits.
    request.id = format!("_{}", random_token::<24>());
    request.force_authn = Some(fresh);
    let location = request
        .redirect(relay_state)
        .map_err(|e| e.to_string())?
        .ok_or("AuthnRequest without a destination")?;
    Ok(Request {
        id: request.id,
        location: location.into(),
    })
}

/// A verified assertion, read.
#[derive(Debug)]
pub struct Accepted {
    pub identity: Identity,
    /// The assertion's id and when it stops being valid (unix seconds),
    /// for the replay check.
    pub assertion_id: String,
    pub expires: i64,
}

/// Verifies the base64 `SAMLResponse` answering AuthnRequest `request_id`.
/// CPU-bound (xmlsec): run it off the async workers.
pub fn accept(
    sp: &ServiceProvider,
    cfg: &ProviderConfig,
    encoded: &str,
    request_id: &str,
) -> Result<Accepted, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.split_ascii_whitespace().collect::<String>())
        .map_err(|_| "the SAMLResponse is not base64")?;
    let xml = std::str::from_utf8(&bytes).map_err(|_| "the SAMLResponse is not UTF-8")?;
    check_shape(xml)?;
    let assertion = sp
        .parse_xml_response(xml, Some(&[request_id]))
        .map_err(|e| e.to_string())?;
    read(sp, cfg, &assertion)
}

/// What a response may be before xmlsec reads it: one assertion, found
/// anywhere in it (a second one, wrapped or not, is how signature-wrapping
/// attacks begin), no encrypted one (not supported), no DTD; at most two
/// signatures (assertion and response), each with one same-document
/// reference (`""` or `#id`: xmlsec would fetch any other URI before it
/// checks the signature) and only SAML's transforms; no `RetrievalMethod`
/// (another fetch).
fn check_shape(xml: &str) -> Result<(), String> {
    let mut reader = quick_xml::NsReader::from_reader(xml.as_bytes());
    let (mut assertions, mut signatures, mut references) = (0, 0, 0);
    loop {
        let (ns, e) = match reader.read_resolved_event() {
            Ok((ns, Event::Start(e) | Event::Empty(e))) => (ns, e),
            Ok((_, Event::DocType(_))) => return Err("a SAML response has no DTD".into()),
            Ok((_, Event::Eof)) => break,
            Ok(_) => continue,
            Err(e) => return Err(format!("the SAMLResponse is not XML: {e}")),
        };
        let in_ns = |uri: &[u8]| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == uri);
        let attr = |name: &[u8]| -> Option<Vec<u8>> {
            e.try_get_attribute(name)
                .ok()
                .flatten()
                .map(|a| a.value.into_owned())
        };
        match e.local_name().as_ref() {
            b"Assertion" if in_ns(ASSERTION_NS) => assertions += 1,
            b"EncryptedAssertion" if in_ns(ASSERTION_NS) => {
                return Err("encrypted assertions are not supported".into());
            }
            b"Signature" if in_ns(DSIG_NS) => signatures += 1,
            b"Reference" if in_ns(DSIG_NS) => {
                references += 1;
                let uri = attr(b"URI").unwrap_or_default();
                let same_document = uri.is_empty()
                    || (uri[0] == b'#'
                        && uri[1..]
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b)));
                if !same_document {
                    return Err("a signature refers to something outside the response".into());
                }
            }
            b"Transform" | b"CanonicalizationMethod" if in_ns(DSIG_NS) => {
                let algorithm = attr(b"Algorithm").unwrap_or_default();
                if !TRANSFORMS.contains(&algorithm.as_slice()) {
                    return Err(format!(
                        "a signature uses transform `{}`",
                        String::from_utf8_lossy(&algorithm)
                    ));
                }
            }
            b"RetrievalMethod" if in_ns(DSIG_NS) => {
                return Err("a signature asks for its key elsewhere".into());
            }
            _ => {}
        }
    }
    if signatures > 2 || references > signatures {
        return Err("the response has more signatures or references than SAML uses".into());
    }
    match assertions {
        1 => Ok(()),
        n => Err(format!("the response carries {n} assertions, not one")),
    }
}

/// The identity in a verified assertion.
fn read(sp: &ServiceProvider, cfg: &ProviderConfig, a: &Assertion) -> Result<Accepted, String> {
    let conditions = a
        .conditions
        .as_ref()
        .ok_or("the assertion has no conditions")?;
    let audiences = conditions
        .audience_restrictions
        .as_deref()
        .ok_or("the assertion names no audience")?;
    let us = sp.entity_id.as_deref().unwrap_or_default();
    if !audiences.iter().all(|r| r.audience.iter().any(|x| x == us)) {
        return Err(format!("the assertion is not for {us}"));
    }
    let expires = conditions
        .not_on_or_after
        .ok_or("the assertion has no NotOnOrAfter")?
        .timestamp();
    let name_id = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .filter(|n| !n.value.trim().is_empty())
        .ok_or("the assertion names no subject")?;
    // One format names the account: a value of another (an address, a
    // transient id) could equal some other account's.
    let format = name_id.format.as_deref().unwrap_or(UNSPECIFIED);
    if format != cfg.name_id_format {
        return Err(format!(
            "the IdP sent a NameID of format {format}, not {}",
            cfg.name_id_format
        ));
    }
    let values = |wanted: &str| -> Vec<String> {
        a.attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| &s.attributes)
            // By `Name`: SAML's `FriendlyName` is for people, not matching.
            .filter(|at| at.name.as_deref() == Some(wanted))
            .flat_map(|at| &at.values)
            .filter_map(|v| v.value.clone())
            .collect()
    };
    let email = values(&cfg.email_attribute)
        .into_iter()
        .map(|e| e.trim().to_owned())
        .find(|e| !e.is_empty());
    let amr = a
        .authn_statements
        .iter()
        .flatten()
        .filter_map(|s| s.authn_context.as_ref()?.value.as_ref()?.value.as_deref())
        .filter_map(amr_of)
        .map(str::to_owned)
        .collect();
    Ok(Accepted {
        identity: Identity {
            provider: cfg.id.clone(),
            subject: name_id.value.trim().to_owned(),
            email_verified: cfg.trust_email && email.is_some(),
            email,
            name: values(&cfg.name_attribute).into_iter().next(),
            username: None,
            groups: values(&cfg.groups_claim),
            groups_complete: true,
            hosted_domain: None,
            amr,
        },
        assertion_id: a.id.clone(),
        expires,
    })
}

/// The `amr` value of an authentication context class, where one fits.
fn amr_of(class: &str) -> Option<&'static str> {
    match class.rsplit([':', '/']).next()? {
        "Password" | "PasswordProtectedTransport" => Some("pwd"),
        "multipleauthn" | "mfa" | "MultiFactor" => Some("mfa"),
        "X509" | "Smartcard" | "SmartcardPKI" => Some("sc"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const IDP: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.test/metadata"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">KEYS<md:SingleSignOnService Binding="BINDING" Location="https://idp.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#;
    const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

    fn config() -> ProviderConfig {
        let toml = "id = \"corp\"\nname = \"Corp\"\nkind = \"saml\"\nmetadata_file = \"idp.xml\"";
        toml::from_str(toml).unwrap()
    }

    fn idp(keys: &str, binding: &str) -> String {
        IDP.replace("KEYS", keys).replace("BINDING", binding)
    }

    fn sp(text: &str) -> Result<ServiceProvider, String> {
        service_provider(
            &config(),
            "https://auth.test",
            "https://auth.test/acs",
            text,
        )
    }

    fn refused(text: &str) -> String {
        match sp(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn metadata_without_a_signing_certificate_or_redirect_endpoint_is_refused() {
        let unsigned = refused(&idp("", REDIRECT));
        assert!(unsigned.contains("no signing certificate"), "{unsigned}");
        let post_only = refused(&idp("", HTTP_POST_BINDING));
        assert!(post_only.contains("HTTP-Redirect"), "{post_only}");
        assert!(
            refused("<html/>").contains("entityID"),
            "{}",
            refused("<html/>")
        );
        let garbage = refused("<md:EntityDescriptor");
        assert!(garbage.contains("not a SAML EntityDescriptor"), "{garbage}");
    }

    #[test]
    fn a_response_carries_exactly_one_plain_assertion() {
        let a = r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a"/>"#;
        let response = |inner: &str| {
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">{inner}</samlp:Response>"#
            )
        };
        check_shape(&response(a)).unwrap();
        let wrapped = response(&format!("<samlp:Extensions>{a}</samlp:Extensions>{a}"));
        assert!(check_shape(&wrapped).unwrap_err().contains("2 assertions"));
        assert!(
            check_shape(&response(""))
                .unwrap_err()
                .contains("0 assertions")
        );
        let encrypted = response(
            r#"<saml:EncryptedAssertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/>"#,
        );
        assert!(check_shape(&encrypted).unwrap_err().contains("encrypted"));
        let dtd = format!("<!DOCTYPE r [<!ENTITY x \"y\">]>{}", response(a));
        assert!(check_shape(&dtd).unwrap_err().contains("DTD"));
        // Another namespace's `Assertion` is not one.
        check_shape(&response(&format!(
            "{a}<x:Assertion xmlns:x=\"urn:other\"/>"
        )))
        .unwrap();
    }

    #[test]
    fn signatures_refer_only_to_the_response_and_use_saml_transforms() {
        let signed = |uri: &str, transform: &str| {
            format!(
                r##"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="a1"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:Reference URI="{uri}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="{transform}"/></ds:Transforms></ds:Reference></ds:SignedInfo></ds:Signature></saml:Assertion></samlp:Response>"##
            )
        };
        let exc = "http://www.w3.org/2001/10/xml-exc-c14n#";
        check_shape(&signed("#a1", exc)).unwrap();
        for uri in [
            "http://127.0.0.1:9/probe",
            "file:///dev/zero",
            "#xpointer(/)",
        ] {
            let e = check_shape(&signed(uri, exc)).unwrap_err();
            assert!(e.contains("outside the response"), "{uri}: {e}");
        }
        let xpath = check_shape(&signed(
            "#a1",
            "http://www.w3.org/TR/1999/REC-xpath-19991116",
        ));
        assert!(xpath.unwrap_err().contains("transform"));
        let fetch = signed("#a1", exc).replace(
            "</ds:SignedInfo>",
            r#"</ds:SignedInfo><ds:KeyInfo><ds:RetrievalMethod URI="http://127.0.0.1:9/key"/></ds:KeyInfo>"#,
        );
        assert!(check_shape(&fetch).unwrap_err().contains("key elsewhere"));
        let two = signed("#a1", exc).replace(
            "</ds:SignedInfo>",
            r##"<ds:Reference URI="#a1"/></ds:SignedInfo>"##,
        );
        assert!(check_shape(&two).unwrap_err().contains("references"));
    }

    #[test]
    fn authentication_contexts_name_their_methods() {
        let ac = "urn:oasis:names:tc:SAML:2.0:ac:classes:";
        assert_eq!(
            amr_of(&format!("{ac}PasswordProtectedTransport")),
            Some("pwd")
        );
        assert_eq!(
            amr_of("http://schemas.microsoft.com/claims/multipleauthn"),
            Some("mfa")
        );
        assert_eq!(amr_of("https://refeds.org/profile/mfa"), Some("mfa"));
        assert_eq!(amr_of(&format!("{ac}unspecified")), None);
    }

    #[test]
    fn our_metadata_names_the_acs_and_wants_signed_assertions() {
        // A self-signed test certificate (P-256), public by nature.
        let cert = "MIIBhTCCASugAwIBAgIUYqjJmXZf70CNv8Ch0QbIUAojDIkwCgYIKoZIzj0EAwIwGDEWMBQGA1UEAwwNdW5pdC10ZXN0LWlkcDAeFw0yNjEyMDYxNDQ2MjdaFw0zNjEyMDMxNDQ2MjdaMBgxFjAUBgNVBAMMDXVuaXQtdGVzdC1pZHAwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATB+sozV3ovdD19WV/CfxQDqYqAE/wJu8mzF/M0X6VeigAiUSGAACAd02NufAFOuKKJqNxz/zWfv9g3z2J1BEQCo1MwUTAdBgNVHQ4EFgQUeLU0bxjmLfBMXZnT1UBlxGsR1CAwHwYDVR0jBBgwFoAUeLU0bxjmLfBMXZnT1UBlxGsR1CAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiB79tpw8pBVExuiQdIXsXitkOpXbheQkwpZ7OJI5jIbOwIhAK1YkT44ewSxQFqw1ytBDzj74nuPcoT2PCAeeSMbPEHP";
        let keys = format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#
        );
        let Ok(sp) = sp(&idp(&keys, REDIRECT)) else {
            panic!("{}", refused(&idp(&keys, REDIRECT)));
        };
        let xml = metadata(&config(), "https://auth.test", "https://auth.test/acs").unwrap();
        assert!(xml.contains("nameid-format:persistent"), "{xml}");
        assert!(
            xml.contains(r#"entityID="https://auth.test/login/federated/corp/metadata""#),
            "{xml}"
        );
        assert!(xml.contains("https://auth.test/acs"), "{xml}");
        assert!(xml.contains(r#"WantAssertionsSigned="true""#), "{xml}");
        let request = request(&sp, "relay", false).unwrap();
        assert!(
            request
                .location
                .starts_with("https://idp.test/sso?SAMLRequest=")
        );
        assert!(request.location.ends_with("&RelayState=relay"));
        assert!(request.id.starts_with('_'));
    }
}
