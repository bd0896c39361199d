"""Every presentation of results: the gates' JUnit properties, terminal table and Markdown
report (`gate_summary`, `notes`), `pld run`'s summary (`run_summary`), the HTML page
(`html_page`, `html_compare`, `charts`), and the text/Markdown/JSON forms of a review, a
comparison, an ablation, the conditions table and a distill proposal.

Arrows point in: these modules read records, results and verdicts from the libraries; nothing
in the core (gates, metrics, stats, runner, record) imports them. Numbers are written by
`pytest_pld.numfmt`, which both sides may use. Importing this package imports none of its
modules, so the plugin stays light until it prints.
"""
