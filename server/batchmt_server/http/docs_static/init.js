// Swagger UI 5 from this server (the fastapi-offline package): no CDN, no inline script (the CSP forbids it).
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
