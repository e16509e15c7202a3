"""Docetaxel: neutropenia by Friberg's myelosuppression model, with its sources.

The PD values are Friberg et al.'s docetaxel neutrophil estimates (J Clin
Oncol 2002;20:4713, Table 4, Emax model), as used by the DTAT package
(D.C. Norris, CRAN ``DTAT``, ``inst/doc/dtat.R``: "From Friberg et al 2002
(Table 4, row 1)").  [R] = reported in the cited source, [I] = derived or
chosen here, with the reason.

Docetaxel is given as a 1-h intravenous infusion every 3 weeks [R] (chemeurope
encyclopedia, "Docetaxel"); pkpd's
PK models take boluses into a depot and no infusions, so the PK here is a
one-compartment stand-in [I]: the clearance of a published two-compartment
model, its total volume, and a first-order input whose mean time (1/ka =
0.5 h) is that of a 1-h infusion.  It reproduces exposure (AUC = dose/CL),
not the distribution phase.

Units: ka 1/h, cl L/h, v L, circ0 10^9/L, mtt h, ec50 ng/mL.
"""

from __future__ import annotations

from ..checks import PKPDInputError
from ..friberg import FribergMyelosuppression
from ..one_compartment import OneCompartmentOral
from ..population import PKPDModel, ResidualError, did_you_mean, known_parameters

NAME = "docetaxel"
POPULATIONS = ("cancer",)
#: The PK and PD structures of this drug's models.
STRUCTURES = (OneCompartmentOral, FribergMyelosuppression)

#: Molar mass, g/mol [R] (C43H53NO14, 807.879 g/mol; chemeurope encyclopedia,
#: "Docetaxel"): converts µmol/L to ng/mL (x 807.879).
MOLAR_MASS_G_PER_MOL = 807.879

#: Clearance, L/h [R]: CL of the two-compartment model of Onoue et al., Eur J Clin
#: Pharmacol 2016;72:703 (Table 2, as coded in DTAT: CL 32.6 L/h, IIV 29.5%).
CL = 32.6
#: Volume, L [I]: Vc + Vp = 5.77 + 11.0 L of the same model (its steady-state volume).
V = 5.77 + 11.0
#: Input rate, 1/h [I]: mean input time 1/ka = 0.5 h, that of a 1-h infusion.
KA = 2.0
#: Friberg 2002, Table 4, docetaxel neutrophils (Emax model) [R].
CIRC0 = 5.05    # 5050 cells/mm^3 = 5.05 x10^9/L (IIV 42%)
MTT = 89.3      # h (IIV 16%)
GAMMA = 0.163   # - (IIV 3.9%)
EMAX = 83.9     # - (IIV 33%)
EC50_UM = 7.17  # µmol/L (IIV 50%)
#: EC50 in ng/mL [I, unit conversion]: 7.17 µmol/L x 807.879 g/mol = 5792 ng/mL.
EC50 = EC50_UM * MOLAR_MASS_G_PER_MOL

TYPICAL = {"ka": KA, "cl": CL, "v": V, "circ0": CIRC0, "mtt": MTT, "gamma": GAMMA, "emax": EMAX, "ec50": EC50}
#: Inter-individual variability as CV [R]: the log-SDs of DTAT's Friberg 2002
#: Table 4 population (CL from Onoue 2016); none on ka and V [I].
IIV = {"cl": 0.295, "circ0": 0.42, "mtt": 0.16, "gamma": 0.039, "emax": 0.33, "ec50": 0.50}
SOURCES = {
    "ka": "[I] mean input time 0.5 h, that of a 1-h infusion (pkpd takes no infusions)",
    "cl": "[R] 32.6 L/h, Onoue et al., Eur J Clin Pharmacol 2016;72:703 (via DTAT)",
    "v": "[I] Vc + Vp = 5.77 + 11.0 L of Onoue 2016 (one compartment instead of two)",
    "circ0": "[R] 5.05 x10^9/L, Friberg et al., J Clin Oncol 2002;20:4713, Table 4 (via DTAT)",
    "mtt": "[R] 89.3 h, Friberg 2002, Table 4",
    "gamma": "[R] 0.163, Friberg 2002, Table 4",
    "emax": "[R] 83.9, Friberg 2002, Table 4 (Emax model)",
    "ec50": "[R] 7.17 µmol/L, Friberg 2002, Table 4; x 807.879 g/mol = 5792 ng/mL [I]",
    "residual_conc": "[I] 20% proportional",
    "residual_plt": "[I] 25% log-normal, near Friberg 2002's 28.6% (paclitaxel leukocytes, DDMODEL00000186)",
}

#: Residual errors [I]: concentrations 20% proportional; counts 25% log-normal,
#: near the 28.6% proportional leukocyte error of Friberg 2002's paclitaxel fit
#: (DDMORE DDMODEL00000186).
RESIDUAL_CONC = ResidualError(prop=0.2)
RESIDUAL_COUNT = ResidualError(prop=0.25, lognormal=True)


def model(population: str = "cancer", **overrides) -> PKPDModel:
    """Docetaxel PK (one-compartment stand-in) with Friberg neutropenia for ``"cancer"`` patients;
    ``overrides`` replace typical values.  Every default cites its source in ``model.describe()``."""
    if population not in POPULATIONS:
        raise PKPDInputError(
            f"population must be 'cancer'; got {population!r}.{did_you_mean(str(population), POPULATIONS)}"
        )
    known_parameters(overrides, NAME, tuple(TYPICAL))
    return PKPDModel(name=NAME, population=population, typical={**TYPICAL, **overrides}, iiv=IIV,
                     residual_conc=RESIDUAL_CONC, residual_plt=RESIDUAL_COUNT, sources=SOURCES,
                     pk=OneCompartmentOral, pd=FribergMyelosuppression)
