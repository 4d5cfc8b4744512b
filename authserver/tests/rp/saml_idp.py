"""A SAML 2.0 identity provider for the federation tests, built on pysaml2
(a SAML implementation nobody here wrote) with Debian's xmlsec1 signing.

    python3 saml_idp.py SP_METADATA_URL WORKDIR

It makes its own key and certificate in WORKDIR, prints one JSON line
`{"message": "listening", "metadata": URL}` and serves:

- `GET /metadata`: its metadata (signing certificate, SSO by HTTP-Redirect);
- `GET /sso?SAMLRequest=…&RelayState=…`: reads the AuthnRequest and shows a
  sign-in form (any password), with the request's ForceAuthn beside it;
- `POST /login`: answers with a page whose form posts the signed Response to
  the AuthnRequest's AssertionConsumerServiceURL (a person presses
  Continue). Test-only fields: `sign` (`assertion`, the default,
  `response`, `both` or `none`), `alg` (`sha256`, the default, or `sha1`),
  `audience` (`other`: the assertion is for another SP), `acs` (`other`:
  sent to another address) and `nameid` (`email`: the address as an
  emailAddress NameID instead of the persistent login).

The SP's metadata is read at the first AuthnRequest (the SP starts after
this), from SP_METADATA_URL; a copy under another entity id stands for some
other service provider (`audience=other`).
"""

import base64
import html
import json
import subprocess
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server

OTHER_SP = "https://other.example/saml"
ALGS = {
    "sha256": ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#sha256"),
    "sha1": ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1"),
}

# The people this IdP knows: login → (address, display name, groups).
PEOPLE = {
    "sam": ("sam@example.com", "Sam Saml", ["idp-staff", "everyone"]),
    "demo": ("demo@example.com", "Not The Demo User", ["everyone"]),
    "demo.evil": ("demo.evil@example.com", "Evil", ["everyone"]),
    "outsider": ("outsider@elsewhere.test", "Outsider", []),
}

sp_metadata_url, workdir = sys.argv[1], Path(sys.argv[2])
key, cert = workdir / "idp.key", workdir / "idp.crt"
subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
     "-subj", "/CN=test-idp", "-keyout", str(key), "-out", str(cert)],
    check=True, capture_output=True,
)

httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
base = f"http://127.0.0.1:{httpd.server_address[1]}"


def config(sp_metadata=None):
    conf = {
        "entityid": f"{base}/metadata",
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT)],
                },
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "want_authn_requests_signed": False,
                "policy": {"default": {"lifetime": {"minutes": 5}}},
            },
        },
        "key_file": str(key),
        "cert_file": str(cert),
        "xmlsec_binary": "/usr/bin/xmlsec1",
    }
    if sp_metadata:
        conf["metadata"] = {"inline": sp_metadata}
    c = IdPConfig()
    c.load(conf)
    return c


server = None
requests = {}


def idp():
    """The pysaml2 server, once the SP's metadata can be read."""
    global server
    if server is None:
        ours = urllib.request.urlopen(sp_metadata_url).read().decode()
        entity = ours.split('entityID="', 1)[1].split('"', 1)[0]
        other = ours.replace(entity, OTHER_SP)
        server = Server(config=config([ours, other]))
    return server


def metadata():
    from saml2.metadata import entity_descriptor
    return str(entity_descriptor(config()))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="text/html; charset=utf-8"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/metadata":
            return self.send(200, metadata(), "application/samlmetadata+xml")
        if url.path != "/sso":
            return self.send(404, "not found")
        try:
            request = idp().parse_authn_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
        except Exception as e:  # a bad request is the test's finding
            return self.send(400, f"bad AuthnRequest: {html.escape(str(e))}")
        args = idp().response_args(request.message)
        handle = str(len(requests))
        requests[handle] = (args, q.get("RelayState", ""))
        self.send(200, f"""<!doctype html><title>Test IdP</title><main>
<h1>Test IdP sign-in</h1>
<form method="post" action="/login">
<input type="hidden" name="request" value="{handle}">
<input type="hidden" name="force_authn" value="{str(request.message.force_authn).lower()}">
<label>Login <input name="login"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form></main>""")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        f = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if urlparse(self.path).path != "/login" or f.get("request") not in requests:
            return self.send(400, "unknown sign-in")
        args, relay_state = requests[f["request"]]
        login = f.get("login", "")
        if login not in PEOPLE:
            return self.send(200, "<main><h1>Unknown user</h1></main>")
        email, name, groups = PEOPLE[login]
        sign = f.get("sign", "assertion")
        sign_alg, digest_alg = ALGS[f.get("alg", "sha256")]
        audience = OTHER_SP if f.get("audience") == "other" else args["sp_entity_id"]
        destination = "http://127.0.0.1:9/elsewhere" if f.get("acs") == "other" else args["destination"]
        if f.get("nameid") == "email":
            name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email)
        else:
            name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=login)
        response = idp().create_authn_response(
            {"mail": [email], "displayName": [name], "isMemberOf": groups},
            userid=login,
            name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_assertion=sign in ("assertion", "both"),
            sign_response=sign in ("response", "both"),
            sign_alg=sign_alg,
            digest_alg=digest_alg,
            in_response_to=args["in_response_to"],
            destination=destination,
            sp_entity_id=audience,
        )
        encoded = base64.b64encode(str(response).encode()).decode()
        self.send(200, f"""<!doctype html><title>Test IdP</title><main>
<h1>Signed in at the test IdP</h1>
<form method="post" action="{html.escape(args['destination'])}">
<input type="hidden" name="SAMLResponse" value="{encoded}">
<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">
<button type="submit">Continue</button>
</form></main>""")


httpd.RequestHandlerClass = Handler
print(json.dumps({"message": "listening", "metadata": f"{base}/metadata"}), flush=True)
httpd.serve_forever()
