"""Units pkpd reads and writes, and the factors between them.

pkpd computes in h, mg, L and ng/mL (concentrations) and 10^9/L (platelet
counts); data may come in other units, converted with these tables.
"""

#: mg/L -> ng/mL
MG_PER_L_TO_NG_PER_ML = 1000.0
#: mg/L per one unit of each concentration unit (for CL/F and Vz/F).
CONC_TO_MG_PER_L = {
    "ng/mL": 1e-3, "ug/L": 1e-3, "µg/L": 1e-3, "mg/L": 1.0, "ug/mL": 1.0, "µg/mL": 1.0,
    "g/L": 1e3, "ng/L": 1e-6, "pg/mL": 1e-6,
}
#: mg per one unit of each dose unit.
DOSE_TO_MG = {"mg": 1.0, "ug": 1e-3, "µg": 1e-3, "g": 1e3, "ng": 1e-6}
#: Platelet count unit, the unit of an observation type named "platelets".
PLATELET_UNIT = "10^9/L"
