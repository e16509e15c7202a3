"""The repository is self-contained: the science the code cites is in ``docs/science.md``.

* no file cites a document outside the repository (the former notes file, or a
  machine path);
* every author-year the model's modules cite is in the page's references;
* every default of ``pkpd.models.hetrombopag`` (typical values, IIV, the ITP
  disease constants) and of the default titration rule is written there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pkpd import TitrationRule
from pkpd.drugs import hetrombopag

ROOT = Path(__file__).resolve().parents[1]
SCIENCE = ROOT / "docs" / "science.md"
SCIENCE_MODULES = ["pkpd/population.py", "pkpd/one_compartment.py", "pkpd/two_compartment.py", "pkpd/pd.py",
                   "pkpd/friberg.py", "pkpd/ode.py", "pkpd/titration.py", "pkpd/trial.py", "pkpd/popfit/pkpd_model.py",
                   *(f"pkpd/drugs/{p.name}" for p in sorted((ROOT / "pkpd" / "drugs").glob("*.py")))]
_AUTHOR_YEAR = re.compile(r"\b([A-Z][a-z]+(?:-[A-Z][a-z]+)?)(?: et al\.?)?,? \(?((?:19|20)\d\d)\b")
#: Words the author-year pattern also catches (journal abbreviations, methods papers cited for statistics).
_NOT_AUTHORS = {"Hematol", "Oncol", "Toxicol", "Pharmacol", "Pharmacokinet", "Pharmacodyn", "Epidemiol", "Haemost", "Ther"}


def _repo_text_files():
    for pattern in ("pkpd/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "notebooks/*.ipynb", "scenarios/*.toml",
                    "docs/**/*.md", "README.md", "pyproject.toml"):
        yield from (p for p in ROOT.glob(pattern) if p != Path(__file__).resolve())


def test_no_file_cites_a_document_outside_the_repository():
    outside = re.compile("hetrombopag" + r"\.md|/work/shared")
    cites = [f"{p.relative_to(ROOT)}:{n}" for p in _repo_text_files()
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert not cites, f"cite docs/science.md instead: {cites}"


def test_readme_points_to_the_science_page():
    assert SCIENCE.is_file() and "docs/science.md" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("module", SCIENCE_MODULES)
def test_every_cited_source_is_in_the_references(module):
    page = SCIENCE.read_text(encoding="utf-8")
    references = page[page.index("## References"):]
    cited = {(a, y) for a, y in _AUTHOR_YEAR.findall((ROOT / module).read_text(encoding="utf-8"))
             if a not in _NOT_AUTHORS}
    missing = sorted(f"{a} {y}" for a, y in cited if not re.search(rf"\b{a}\b[^\n]*\b{y}\b", references))
    assert not missing, f"{module} cites sources docs/science.md does not list: {missing}"


def _numbers(page: str) -> set[str]:
    return set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", page))


@pytest.mark.parametrize("population", ["healthy", "itp"])
def test_every_default_of_the_model_is_on_the_page(population):
    found = _numbers(SCIENCE.read_text(encoding="utf-8"))
    model = hetrombopag.model(population)
    wanted = {f"typical {p}": f"{v:g}" for p, v in model.typical.items()}
    wanted |= {f"IIV {p}": f"{100 * cv:g}" for p, cv in model.iiv.items()}
    wanted |= {"residual conc": f"{100 * model.residual_conc.prop:g}", "residual plt": f"{100 * model.residual_plt.prop:g}",
               "non-responders": f"{100 * model.nonresponder_fraction:g}"}
    if model.baseline is not None:
        b = model.baseline
        wanted |= {"baseline median": f"{b.median:g}", "baseline sd_log": f"{b.sd_log:g}", "baseline low": f"{b.low:g}",
                   "baseline high": f"{b.high:g}", "screening noise": f"{b.noise:g}"}
    missing = {k: v for k, v in wanted.items() if v not in found}
    assert not missing, f"defaults of hetrombopag({population!r}) not written in docs/science.md: {missing}"


def test_every_number_of_the_default_titration_rule_is_on_the_page():
    found = _numbers(SCIENCE.read_text(encoding="utf-8"))
    rule = TitrationRule()
    wanted = {f"ladder {x:g}": f"{x:g}" for x in rule.ladder_mg if x > 0}
    wanted |= {k: f"{getattr(rule, k):g}" for k in ("visit_every_days", "low", "high", "interrupt_above", "resume_below",
                                                      "step_up_after_days")}
    missing = {k: v for k, v in wanted.items() if v not in found}
    assert not missing, f"defaults of TitrationRule() not written in docs/science.md: {missing}"
