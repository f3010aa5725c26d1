// /docs: Swagger UI over this server's /openapi.json. A file of its own, not an inline script,
// so the page's Content-Security-Policy needs no 'unsafe-inline' for scripts.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Swagger UI would otherwise send the spec to its public validator: nothing leaves this server.
    validatorUrl: null,
  });
});
