"""Independent reference: the full PK/PD system integrated by scipy's solve_ivp.

The PK is *not* taken from pkpd here: depot and central amounts are ODE states,
integrated together with the transit chain, restarting the integration at
every dose (NONMEM-style event handling).  Used only by the tests.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def platelets_ode(p: dict, dose_times, amounts, times, method="DOP853", rtol=1e-11, atol=1e-12, graded=0):
    """Platelets (10^9/L) and concentrations (ng/mL) at ``times`` for one subject.

    p: ka, cl, v, emax, ec50, hill, n_transit, mtt, gamma, plt0, lifespan, and for
    saturable elimination vmax (mg/h) and km (ng/mL).
    Doses (mg) go into the depot; a dose at a report time is given first.
    ``graded`` > 0 also restarts at t_dose + span 2^-j (j = 1..graded): with
    hill < 1, dE/dC is infinite at C = 0, and an integrator started anew close
    to the dose resolves E ~ t^hill that one started at the dose does not.
    """
    n = int(p["n_transit"])
    ka, k, v = p["ka"], p["cl"] / p["v"], p["v"]
    ktr, kdeg = n / p["mtt"], 1 / p["lifespan"]
    plt0, gamma, hill = p["plt0"], p["gamma"], p["hill"]
    kin = plt0 * kdeg
    # Michaelis-Menten elimination in parallel (pkpd.saturable): Vmax mg/h, Km ng/mL -> Km V mg
    vmax, kmv = p.get("vmax", 0.0), p.get("km", 0.0) * v / 1000.0

    def effect(ac):
        c = max(ac, 0.0) / v * 1000.0
        return p["emax"] * c**hill / (p["ec50"] ** hill + c**hill) if c > 0 else 0.0

    def rhs(t, y):
        d = np.empty_like(y)
        d[0] = -ka * y[0]
        d[1] = ka * y[0] - k * y[1] - (vmax * y[1] / (kmv + y[1]) if vmax else 0.0)
        d[2] = kin * (1 + effect(y[1])) * (plt0 / y[-1]) ** gamma - ktr * y[2]
        d[3 : 2 + n] = ktr * (y[2 : 1 + n] - y[3 : 2 + n])
        d[-1] = ktr * y[1 + n] - kdeg * y[-1]
        return d

    def jac(t, y):
        J = np.zeros((n + 3, n + 3))
        J[0, 0], J[1, 0], J[1, 1] = -ka, ka, -k - (vmax * kmv / (kmv + y[1]) ** 2 if vmax else 0.0)
        c = max(y[1], 0.0) / v * 1000.0
        fb = (plt0 / y[-1]) ** gamma
        if c > 0:
            de = p["emax"] * hill * c ** (hill - 1) * p["ec50"] ** hill / (p["ec50"] ** hill + c**hill) ** 2
            J[2, 1] = kin * de * 1000.0 / v * fb
        J[2, 2] = -ktr
        J[2, -1] = -kin * (1 + effect(y[1])) * fb * gamma / y[-1]
        for i in range(3, 2 + n):
            J[i, i - 1], J[i, i] = ktr, -ktr
        J[-1, 1 + n], J[-1, -1] = ktr, -kdeg
        return J

    y = np.r_[0.0, 0.0, np.full(n, kin / ktr), plt0]
    t0 = 0.0
    plt, conc = [], []
    dose_times, amounts, times = (np.asarray(a, float) for a in (dose_times, amounts, times))
    events = np.union1d(dose_times, times)
    if graded:
        after = [d + (nxt - d) * 0.5 ** np.arange(1, graded + 1)
                 for d, nxt in zip(dose_times, np.r_[dose_times[1:], events[-1]]) if nxt > d]
        events = np.union1d(events, np.concatenate(after)) if after else events
    for t in events:
        if t > t0:
            extra = {"jac": jac} if method in ("Radau", "BDF", "LSODA") else {}
            sol = solve_ivp(rhs, (t0, t), y, method=method, rtol=rtol, atol=atol, **extra)
            assert sol.success, sol.message
            y, t0 = sol.y[:, -1].copy(), t
        y[0] += amounts[dose_times == t].sum()
        if np.any(times == t):
            plt.append(y[-1])
            conc.append(y[1] / v * 1000.0)
    return np.array(conc), np.array(plt)
