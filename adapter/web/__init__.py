"""The reconciliation console: a small server-rendered web app for data managers.

docs/design.md §7.  Pages are plain HTML forms (no JavaScript build, no client
framework) so they work in any hospital browser and behind strict proxies;
every change goes through the same library functions the CLI uses
(``adapter.reconciliation``), and every page type has its own module in ``views/``.
"""
