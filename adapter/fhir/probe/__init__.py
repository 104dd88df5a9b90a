"""Behaviour probes for ``trial-adapter check``: does the server answer the searches the REST source asks?

The CapabilityStatement says what a server means to do; these probes see
what it does.  They run a handful of small, read-only searches for the
first few roster patients found by identifier and compare the answers with
each other, never trusting one answer to be the answer to the question
asked (a server may "return additional results it finds relevant",
https://hl7.org/fhir/R4/search.html#summary, ignore a parameter, or lose
the search in its next links):

1. an OR-list of identifiers (``Patient?identifier=a,b``) finds exactly the
   patients the single-identifier searches find;
2. an OR-list of patients (``Observation?patient=a,b&code=…``, else
   MedicationAdministration or Procedure) answers exactly the union of the
   single-patient searches;
3. ``_lastUpdated`` is honoured: a search for what changed an hour after the
   server's own time is empty;
4. ``_count = page_size`` is honoured (and how far up to 1000 it goes);
5. next links keep the search: the second page of a ``_count=1`` or ``2``
   search still fits the search (patient and code asked for), and a link
   that reads as a plain search URL still holds its filter parameters (an
   opaque continuation such as HAPI's ``_getpages`` is fine when its page
   fits);
6. whether Observation searches by patient and code need a ``category``;
7. whether ``Prefer: handling=strict`` makes the server refuse an unknown
   parameter;

and every answer to a plain search (one identifier, one patient) is checked
against its search with ``adapter.fhir.verify``, the same check the sync
runs on every page.

``base`` holds the framework (settings, row names, the ``Prober`` that
searches), ``patients`` probes 1 and 2, ``paging`` probes 3 to 5,
``parameters`` probes 6 and 7 and the fit row; ``runner`` runs them in order.

Each probe is one ``CheckRow``: what was found, what it means for a sync
and the setting that adapts to it.  A quirk the current settings already
adapt to is ok, with the finding.  A quirk they do not cover is red when a
sync would read data it must not keep, lose data, or stop with an error on
every pass; otherwise it is a warning.  A probe that cannot run (a network
error, the time limit) is a warning row, never a crash.  No patient id,
identifier value or name appears in a row: only counts, resource types,
parameter names and settings.
"""

from adapter.fhir.probe.base import (
    ITEM_CATEGORY,
    ITEM_COUNT,
    ITEM_FIT,
    ITEM_IDENTIFIERS,
    ITEM_LAST_UPDATED,
    ITEM_NEXT_LINKS,
    ITEM_PATIENTS,
    ITEM_ROSTER,
    ITEM_STRICT,
)
from adapter.fhir.probe.runner import probe_server

__all__ = [
    "ITEM_CATEGORY",
    "ITEM_COUNT",
    "ITEM_FIT",
    "ITEM_IDENTIFIERS",
    "ITEM_LAST_UPDATED",
    "ITEM_NEXT_LINKS",
    "ITEM_PATIENTS",
    "ITEM_ROSTER",
    "ITEM_STRICT",
    "probe_server",
]
