"""Reconciliation: the data manager's worklist and fixes for mapping issues, and mapping coverage.

``fixes`` (map a code or a unit, ignore a code or an issue) and ``undoing``
are what the console and the CLI call; ``override_fix`` applies an edit of
the site's fix file and re-maps, ``changes`` reports what a fix changed,
``legacy`` carries fixes from the old place into the site's fix file, and
``actions`` names them all.  ``coverage`` measures how much of what a site
sends is mapped.  ``issue_query`` finds the issues to work on, for the
console and ``trial-adapter issues list``, with a ``glimpse`` of the source
behind each.  ``suggestions`` ranks the concepts an unknown code probably
means from what the site sent under it (``sent_under_code``), and accepts
one as a ``map code`` fix when a person says so.
"""
