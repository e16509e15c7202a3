"""Theophylline: the numbers of its population PK priors, with their sources.

Used by :func:`pkpd.popfit.theophylline_model` (one-compartment oral PK of
adults, fitted to the classic Boeckmann/Sheiner/Beal theophylline data that
ships with pkpd).  [R] = reported in the cited source, [I] = chosen here.

Units: ka 1/h, cl L/h, v L, weight kg; concentrations mg/L.
"""

#: Typical values, prior log-SD of each, prior median of its IIV (CV), unit and source.
#: CL 0.04 L/h/kg x 70 kg = 2.8 L/h and V 0.5 L/kg x 70 kg = 35 L [R]:
#: Goodman & Gilman's The Pharmacological Basis of Therapeutics, Appendix II
#: (theophylline: CL 0.65 mL/min/kg, Vss 0.50 L/kg); ka 1.5 /h [I]: fast
#: absorption of the oral solution (Tmax ~1-2 h); IIV medians ~50% (ka), 30%
#: (CL), 20% (V) [I].
PK_PRIORS = {
    "ka": (1.5, 1.0, 0.5, "1/h", "[I] fast oral absorption, Tmax 1-2 h"),
    "cl": (2.8, 0.5, 0.3, "L/h", "[R] 0.04 L/h/kg (Goodman & Gilman, App. II)"),
    "v": (35.0, 0.5, 0.2, "L", "[R] 0.5 L/kg (Goodman & Gilman, App. II)"),
}
#: Reference weight (kg) and allometric exponent priors (mean, SD) [R, allometric
#: scaling]: CL ~ (WT/70)^theta, theta ~ N(0.75, 0.25); V ~ (WT/70)^theta, theta ~ N(1, 0.25).
REFERENCE_WEIGHT_KG = 70.0
WEIGHT_EXPONENTS = {"cl": (0.75, 0.25), "v": (1.0, 0.25)}
#: Combined residual error [I]: sigma_prop prior median 10%, sigma_add HalfNormal
#: scale 0.5 mg/L (median 0.34 mg/L); concentrations in mg/L (the data's DV unit).
RESIDUAL_PROP_MEDIAN = 0.10
RESIDUAL_ADD_SCALE_MG_L = 0.5
CONC_UNIT = "mg/L"
