"""One module per page type (the split of datasette's ``views/``).

``ROUTERS`` is what ``app.create_app`` mounts; a new page type is a new
module here and one line in this list.
"""

from __future__ import annotations

from adapter.web.views import audit, exports, issue, jobs, login, site, subject, users, worklist

ROUTERS = (
    login.router,
    worklist.router,
    issue.router,
    subject.router,
    site.router,
    audit.router,
    jobs.router,
    exports.router,
    users.router,
)
