"""The parameter probes: whether Observation searches need a category, whether the server honours
``Prefer: handling=strict``, and whether the answers to plain searches fit their search.
"""

from __future__ import annotations

from adapter.fhir import bundles, search_terms
from adapter.fhir.check_row import CheckRow
from adapter.fhir.probe.base import ITEM_CATEGORY, ITEM_FIT, ITEM_STRICT, UNKNOWN_PARAM, Prober, words


def category(prober: Prober) -> CheckRow:
    configured = prober.server.observation_category
    if not prober.codes:
        return CheckRow(
            ITEM_CATEGORY,
            True,
            "not tested: the catalog maps no Observation codes, so the REST source runs no "
            "Observation search",
        )
    patient = prober.found[0][1]
    base = {"patient": search_terms.escape_token(patient), "code": ",".join(prober.codes)}
    without = prober.search("Observation", {**base, "_count": "1"})
    prober.count_misfits("Observation", base, without)
    if without.refused is None:
        prober.category_required = False
        note = f"; observation_category = {list(configured)} narrows the searches" if configured else ""
        return CheckRow(
            ITEM_CATEGORY,
            True,
            f"not required: Observation?patient=…&code=… was answered without category{note}",
        )
    category = ",".join(configured) or "laboratory"
    with_category = prober.search("Observation", {**base, "category": category, "_count": "1"})
    if with_category.refused is not None:
        return CheckRow(
            ITEM_CATEGORY,
            False,
            f"Observation?patient=…&code=… was refused without category ({without.refused}) and with "
            f"category={category} ({with_category.refused}); the sync's Observation searches would "
            "fail; check the search parameters the capability rows list, and codes_per_query (a "
            "shorter code list per search)",
        )
    prober.category_required = True
    found = (
        f"required: Observation?patient=…&code=… was refused without category ({without.refused}) "
        f"and answered with category={category}"
    )
    if configured:
        return CheckRow(ITEM_CATEGORY, True, f"{found}; observation_category = {list(configured)} sends it")
    return CheckRow(
        ITEM_CATEGORY,
        False,
        f"{found}; the sync's Observation searches would fail; set observation_category, e.g. "
        '["laboratory", "vital-signs"]',
    )


def strict(prober: Prober) -> CheckRow:
    # `_id` of no real resource: nothing about a patient is asked, nothing comes back.
    params = {"_id": "trial-adapter-check", UNKNOWN_PARAM: "1", "_count": "1"}
    answer = prober.search("Patient", params, headers=bundles.SEARCH_HEADERS)
    asked = f"a search with an unknown parameter ({UNKNOWN_PARAM}) and Prefer: handling=strict"
    if answer.refused is not None:
        if not prober.server.strict_search:
            return CheckRow(
                ITEM_STRICT,
                True,
                f"honoured: {asked} was refused; strict_search = false, so the adapter does not ask "
                "for it: set strict_search = true",
                True,
            )
        return CheckRow(ITEM_STRICT, True, f"honoured: {asked} was refused")
    return CheckRow(
        ITEM_STRICT,
        True,
        f"the server ignores parameters it does not support ({asked} was answered); the adapter "
        "checks every result against its query",
        True,
    )


def fit(prober: Prober) -> CheckRow:
    if not prober.misfits:
        return CheckRow(
            ITEM_FIT,
            True,
            f"each of the {prober.checked} resource(s) the probes' searches returned fits its search",
        )
    kinds = words(prober.misfits)
    if set(prober.misfits) == {"unasked_category"} and prober.server.observation_category:
        return CheckRow(
            ITEM_FIT,
            False,
            f"plain searches returned {kinds}: the server ignores the category parameter; the "
            "adapter stops such searches as a server fault; set observation_category = [] (the "
            "code filter is enough)",
        )
    return CheckRow(
        ITEM_FIT,
        False,
        f"plain searches (one identifier, one patient) returned {kinds}: the server ignores a "
        "search parameter; the adapter stops such searches as a server fault and no setting adapts "
        "to it; ask the site, or use a fhir-bulk source",
    )


# ------------------------------------------------------------- helpers
