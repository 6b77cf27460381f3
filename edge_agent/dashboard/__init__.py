"""The nurse's dashboard (issue 10): a small aiohttp app served inside the agent's event loop
(``part``), its login and sessions (``auth``), visits (``visits``), the live view model fed by the
agent's events (``view``), message catalogues (``i18n``, ``locale/*.po``) and static assets."""

import mimetypes

# aiohttp builds a mimetypes table when it is imported (web_fileresponse.CONTENT_TYPES), and the
# first table reads the system's /etc/mime.types: 0.34 MiB of the agent's RSS (issue 14: importing
# aiohttp.web after the rest of the agent, 1,550 types instead of 149). The dashboard serves
# nothing by guessed type (its static assets have fixed ones, webui.session_routes.CONTENT_TYPES),
# so the agent keeps Python's built-in table. Set before edge_agent.dashboard.part imports aiohttp.
mimetypes.knownfiles = []
