// Swagger UI from this server (the swagger-ui-bundle package): no CDN, no inline script (the CSP forbids it).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
