// The one script of the authserver's pages: WebAuthn ceremonies. A form
// marked data-webauthn="register|authenticate|discover" names a JSON data
// block with the server's options; the browser's answer goes into the
// form's `credential` field and the form is submitted. No inline script.
"use strict";
(function () {
  const bytes = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "===".slice((b64.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  };
  const text = (buffer) => {
    if (!buffer) return null;
    let s = "";
    for (const b of new Uint8Array(buffer)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const ids = (list) => (list || []).map((c) => Object.assign({}, c, { id: bytes(c.id) }));

  function creation(options) {
    const pk = Object.assign({}, options.publicKey);
    pk.challenge = bytes(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: bytes(pk.user.id) });
    pk.excludeCredentials = ids(pk.excludeCredentials);
    // Discoverable, so the key can also sign in without a password.
    pk.authenticatorSelection = Object.assign({}, pk.authenticatorSelection, {
      residentKey: "required",
      requireResidentKey: true,
      userVerification: "required",
    });
    return { publicKey: pk };
  }

  function request(options) {
    const pk = Object.assign({}, options.publicKey);
    pk.challenge = bytes(pk.challenge);
    pk.allowCredentials = ids(pk.allowCredentials);
    return { publicKey: pk };
  }

  function registered(cred) {
    return {
      id: cred.id,
      rawId: text(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: text(cred.response.attestationObject),
        clientDataJSON: text(cred.response.clientDataJSON),
        transports: cred.response.getTransports ? cred.response.getTransports() : [],
      },
      extensions: cred.getClientExtensionResults(),
    };
  }

  function asserted(cred) {
    return {
      id: cred.id,
      rawId: text(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: text(cred.response.authenticatorData),
        clientDataJSON: text(cred.response.clientDataJSON),
        signature: text(cred.response.signature),
        userHandle: text(cred.response.userHandle),
      },
      extensions: cred.getClientExtensionResults(),
    };
  }

  function report(form, message) {
    const out = form.querySelector("[data-webauthn-status]");
    if (out) out.textContent = message;
  }

  function submit(form, json) {
    form.querySelector("input[name=credential]").value = JSON.stringify(json);
    form.submit();
  }

  for (const form of document.querySelectorAll("form[data-webauthn]")) {
    const mode = form.dataset.webauthn;
    const block = document.getElementById(form.dataset.options);
    if (!block || !window.PublicKeyCredential) {
      report(form, "This browser cannot use passkeys.");
      continue;
    }
    const options = JSON.parse(block.textContent);
    let conditional = null;
    const run = async (mediation) => {
      try {
        if (mode === "register") {
          submit(form, registered(await navigator.credentials.create(creation(options))));
          return;
        }
        const req = request(options);
        if (mediation) {
          conditional = new AbortController();
          req.mediation = "conditional";
          req.signal = conditional.signal;
        }
        submit(form, asserted(await navigator.credentials.get(req)));
      } catch (e) {
        if (e && e.name === "AbortError") return;
        report(form, "The passkey did not answer: " + (e && e.message ? e.message : e));
      }
    };
    const button = form.querySelector("button[data-webauthn-start]");
    if (button) {
      button.addEventListener("click", () => {
        if (conditional) conditional.abort();
        run(false);
      });
    }
    // On the login page, offer passkeys in the username field's autofill
    // where the browser supports it (conditional mediation); the button
    // works everywhere. After a failure, only the button: an authenticator
    // that answers by itself would otherwise retry in a loop.
    const failed = document.querySelector("[role=alert]") !== null;
    if (mode === "discover" && !failed && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then((yes) => {
        if (yes) run(true);
      });
    }
  }
})();
