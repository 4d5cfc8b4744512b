//! `routes.toml` against the demo schema: any text is a mapping or a list
//! of errors, never a panic; a mapping maps hostile requests without one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn schema() -> &'static cedar_policy::Schema {
    static SCHEMA: OnceLock<cedar_policy::Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../policies/schema.cedarschema");
        cedar_policy::Schema::from_cedarschema_str(text)
            .map(|(schema, _)| schema)
            .unwrap_or_else(|e| panic!("the demo schema: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mapping) = decision::mapping::Mapping::parse(text, schema()) else {
        return;
    };
    let claims = decision::Claims {
        sub: Some("bob".into()),
        ..Default::default()
    };
    for path in ["/", "/a", "/api/orders/1", "/%C3%A9/x", "/a/b/c/d/e"] {
        for method in ["GET", "POST", "DELETE"] {
            let _ = mapping.map(method, path, Some("app.example"), Some(&claims));
            let _ = mapping.map(method, path, None, None);
        }
    }
});
