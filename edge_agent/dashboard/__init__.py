"""The nurse's dashboard (issue 10): a small web app served inside the agent's event loop by
``webui.httpd`` (``part``), its login and sessions (``auth``), visits (``visits``), the live view
model fed by the agent's events (``view``), message catalogues (``i18n``, ``locale/*.po``) and
static assets."""
