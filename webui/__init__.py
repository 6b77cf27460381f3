"""What the station's nurse dashboard (edge_agent.dashboard) and the hub's fleet page (hub.web)
share, pure and small: scrypt secrets, sessions and the login limit (auth), gettext catalogues
(i18n), template rendering and the security headers and same-origin check (http)."""
