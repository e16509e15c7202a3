"""Eltrombopag: a two-compartment oral PK set with its source, and a PK/PD model built on it.

Eltrombopag is an oral thrombopoietin-receptor agonist for immune
thrombocytopenia (ITP).  Its population PK (Gibiansky et al., "Population
pharmacokinetics of eltrombopag in healthy subjects and patients with chronic
idiopathic thrombocytopenic purpura", J Clin Pharmacol 2011;51:842-856, doi
10.1177/0091270010375427, PubMed 20663993) is a two-compartment model with
dual sequential first-order absorption and an absorption lag; the abstract
reports the disposition of a typical 70-kg Caucasian male ITP patient not
taking corticosteroids.  Those four numbers are used as reported ([R]); the
absorption is simplified here to one first-order rate without lag ([I]),
because the abstract gives no absorption estimates.

The PD values are *not* eltrombopag estimates: they are hetrombopag's
(:mod:`pkpd.drugs.hetrombopag`) with EC50 rescaled to eltrombopag's exposure
([I], see :data:`ITP_EC50`).  [R] = reported in the cited source, [I] =
derived or chosen here, with the reason.

Units: ka 1/h, cl L/h, v1 L, q L/h, v2 L, ec50 ng/mL.
"""

from __future__ import annotations

from ..checks import PKPDInputError
from ..pd import TransitPlatelets
from ..population import PKPDModel, did_you_mean, known_parameters
from ..two_compartment import TwoCompartmentOral
from . import hetrombopag

NAME = "eltrombopag"
POPULATIONS = ("healthy", "itp")
#: The PK and PD structures of this drug's models.
STRUCTURES = (TwoCompartmentOral, TransitPlatelets)

# ---------------------------------------------------------------- PK, ITP (Gibiansky 2011 abstract)
#: Apparent clearance CL/F, L/h [R] (typical 70-kg Caucasian male ITP patient, no corticosteroids).
CL = 0.668
#: Apparent central volume Vc/F, L [R].
V1 = 8.76
#: Apparent distributional clearance Q/F, L/h [R].
Q = 0.399
#: Apparent peripheral volume Vp/F, L [R].
V2 = 11.3
#: CL/F of healthy subjects relative to ITP patients [R]: "17% higher in healthy
#: subjects compared with ITP patients" (Gibiansky 2011).
HEALTHY_CL_FACTOR = 1.17
#: Absorption rate constant ka, 1/h [I]: with the disposition above, one
#: first-order rate of 0.45 /h puts the single-dose peak at ~4.0 h, the middle
#: of the labelled 2-6 h to maximum concentration (Revolade product
#: information, Swiss Fachinformation, section Pharmacokinetics: "Die maximale
#: Konzentration ... wird 2 bis 6 Stunden nach oraler Gabe erreicht").
KA = 0.45

# ---------------------------------------------------------------- PD [I], borrowed
#: Starting dose of eltrombopag in ITP, mg once daily [R] (Hayes et al., J Clin
#: Pharmacol 2011;51:1403, doi 10.1177/0091270010383019: "starting eltrombopag
#: at a dose of 50 mg once daily").
START_DOSE_MG = 50.0
#: Hetrombopag's top phase III dose, mg once daily [R] (hetrombopag.DOSE_LADDER_MG).
HETROMBOPAG_DOSE_MG = max(hetrombopag.DOSE_LADDER_MG)
#: EC50 in ITP, ng/mL [I]: hetrombopag's ITP EC50 times the ratio of average
#: steady-state concentrations dose/(CL/F x 24 h) of eltrombopag 50 mg and
#: hetrombopag 7.5 mg, so that both drugs sit at the same point of their
#: Emax curves at these doses (about 1530 ng/mL).
ITP_EC50 = hetrombopag.ITP_EC50 * (START_DOSE_MG / CL) / (HETROMBOPAG_DOSE_MG / hetrombopag.CL)
#: Inter-individual variability as CV [I]: not in the abstract; hetrombopag's
#: values for CL and ka, its V for both volumes, 50% for Q.
PK_IIV = {"ka": hetrombopag.HEALTHY_IIV["ka"], "cl": hetrombopag.HEALTHY_IIV["cl"],
          "v1": hetrombopag.HEALTHY_IIV["v"], "q": 0.5, "v2": hetrombopag.HEALTHY_IIV["v"]}

SOURCES = {
    "ka": "[I] single-dose Tmax ~4 h, inside the labelled 2-6 h (Revolade product information)",
    "cl": "[R] CL/F 0.668 L/h ITP (x1.17 healthy [R]), Gibiansky et al., J Clin Pharmacol 2011;51:842",
    "v1": "[R] Vc/F 8.76 L, Gibiansky 2011",
    "q": "[R] Q/F 0.399 L/h, Gibiansky 2011",
    "v2": "[R] Vp/F 11.3 L, Gibiansky 2011",
    "ec50": "[I] hetrombopag's ITP EC50 scaled by the steady-state exposure ratio (50 mg eltrombopag : 7.5 mg hetrombopag)",
}
SOURCES = {k: v + ("; IIV [I], see PK_IIV" if k in PK_IIV else "") for k, v in SOURCES.items()}


def model(population: str = "itp", **overrides) -> PKPDModel:
    """Eltrombopag PK (two-compartment, Gibiansky 2011) with hetrombopag's platelet PD [I]."""
    if population not in POPULATIONS:
        raise PKPDInputError(
            f"population must be 'healthy' or 'itp'; got {population!r}.{did_you_mean(str(population), POPULATIONS)}"
        )
    base = hetrombopag.model(population, pk="linear")  # its linear-PK platelet model, whose EC50 scales by exposure
    pd_typical = {k: v for k, v in base.typical.items() if k not in ("ka", "cl", "v")}
    cl = CL * (HEALTHY_CL_FACTOR if population == "healthy" else 1.0)
    ec50 = ITP_EC50 * base.typical["ec50"] / hetrombopag.ITP_EC50
    typical = {"ka": KA, "cl": cl, "v1": V1, "q": Q, "v2": V2, **pd_typical, "ec50": ec50}
    iiv = {**{k: v for k, v in base.iiv.items() if k not in ("ka", "cl", "v")}, **PK_IIV}
    known_parameters(overrides, NAME, tuple(typical))
    typical.update(overrides)
    pd_sources = {k: f"[I] borrowed from hetrombopag: {v}" for k, v in base.sources.items()
                  if k not in SOURCES and k not in ("ka", "cl", "v")}
    return PKPDModel(name=NAME, population=population, typical=typical, iiv=iiv, residual_conc=base.residual_conc,
                     residual_plt=base.residual_plt, pk=TwoCompartmentOral, pd=TransitPlatelets,
                     sources={**pd_sources, **SOURCES}, baseline=base.baseline,
                     nonresponder_fraction=base.nonresponder_fraction)
