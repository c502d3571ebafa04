"""The Laplace deviance of a logistic random-intercept model and its analytic gradient.

:func:`analysis.glmm.fit_glmm` minimises this deviance; its module docstring gives
the formulas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg, special

_PIRLS_TOLERANCE = 1e-10
_PIRLS_MAX_STEPS = 100
_CHECKED_STEP = 0.5
"""PIRLS steps (in units of the spherical random effect) above this are checked for ascent."""


class LaplaceDeviance:
    """Laplace deviance of a logistic random-intercept model and its gradient."""

    def __init__(self, y, trials, X, codes, n_levels):
        self.y = y
        self.trials = trials
        # A sweep's design has few distinct rows (one per cell and feature), so X @ beta
        # and X^T v go through the distinct rows and a gather or bincount.
        self.patterns, self.pattern_of_row = distinct_rows(X)
        self.n_factors = len(n_levels)
        self.n_levels = np.asarray(n_levels)
        offsets = np.concatenate([[0], np.cumsum(n_levels)[:-1]])
        self.columns = [codes[k] + offsets[k] for k in range(self.n_factors)]
        self.factor_of_column = np.repeat(np.arange(self.n_factors), n_levels)
        self.q = int(np.sum(n_levels))
        self.u = np.zeros(self.q)
        self.log_binomial = float(
            np.sum(
                special.gammaln(trials + 1)
                - special.gammaln(y + 1)
                - special.gammaln(trials - y + 1)
            )
        )
        self.evaluations = 0

    def xt(self, values):
        """Return X^T values, summed over the distinct rows of X."""
        sums = np.bincount(self.pattern_of_row, values, minlength=self.patterns.shape[0])
        return self.patterns.T @ sums

    # Z^T v and Z Lambda u with Z the indicator matrix of every factor's levels.
    def _zt(self, values):
        total = np.zeros(self.q)
        for column in self.columns:
            total += np.bincount(column, values, minlength=self.q)
        return total

    def _z(self, values_per_column):
        out = np.zeros(self.y.shape[0])
        for column in self.columns:
            out += values_per_column[column]
        return out

    def _hessian(self, theta, w):
        # H = Lambda Z^T W Z Lambda + I: diagonal for one factor, dense otherwise.
        scale = theta[self.factor_of_column]
        if self.n_factors == 1:
            return 1.0 + scale**2 * self._zt(w)
        flat = np.zeros(self.q * self.q)
        for first in self.columns:
            for second in self.columns:
                flat += np.bincount(first * self.q + second, w, minlength=self.q * self.q)
        matrix = flat.reshape(self.q, self.q) * np.outer(scale, scale)
        matrix[np.diag_indices(self.q)] += 1.0
        return matrix

    def _loglik(self, eta, mu=None):
        """Binomial log-likelihood without the binomial coefficients.

        With mu at hand, log(1 + e^eta) = max(eta, 0) - log(max(mu, 1 - mu)), whose
        logarithm argument lies in [0.5, 1], so no second exponential is needed.
        """
        if mu is None:
            mu = special.expit(eta)
        softplus = np.maximum(eta, 0.0) - np.log(np.maximum(mu, 1.0 - mu))
        return float(self.y @ eta - self.trials @ softplus)

    def _mean_weights(self, eta):
        mu = special.expit(eta)
        return mu, self.trials * mu * (1.0 - mu)

    def _conditional_mode(self, theta, eta_fixed):
        """Run PIRLS from the last mode; return u, eta, mu, w and the log-likelihood there."""
        scale = theta[self.factor_of_column]
        u = self.u.copy()
        eta = eta_fixed + self._z(scale * u)
        mu, w = self._mean_weights(eta)
        objective = None
        for _ in range(_PIRLS_MAX_STEPS):
            gradient = scale * self._zt(self.y - self.trials * mu) - u
            hessian = self._hessian(theta, w)
            if self.n_factors == 1:
                step = gradient / hessian
            else:
                step = linalg.solve(hessian, gradient, assume_a="pos")

            # The objective is concave, so Newton steps point uphill and small ones are taken
            # unchecked. A step above _CHECKED_STEP is halved until the objective does not fall.
            if np.max(np.abs(step)) > _CHECKED_STEP:
                if objective is None:
                    objective = self._loglik(eta) - 0.5 * u @ u
                for _ in range(30):
                    trial = u + step
                    trial_objective = self._loglik(eta_fixed + self._z(scale * trial))
                    trial_objective -= 0.5 * trial @ trial
                    if trial_objective >= objective - 1e-12 * abs(objective):
                        break
                    step = step / 2.0
                objective = trial_objective
            else:
                objective = None
            u = u + step
            eta = eta_fixed + self._z(scale * u)
            mu, w = self._mean_weights(eta)
            if np.max(np.abs(step)) < _PIRLS_TOLERANCE:
                break
        self.u = u
        return u, eta, mu, w, self._loglik(eta, mu)

    def evaluate(self, params, with_gradient=True):
        self.evaluations += 1
        theta = np.asarray(params[: self.n_factors])
        beta = np.asarray(params[self.n_factors :])
        eta_fixed = (self.patterns @ beta)[self.pattern_of_row]
        u, eta, mu, w, loglik = self._conditional_mode(theta, eta_fixed)

        hessian = self._hessian(theta, w)
        if self.n_factors == 1:
            logdet = float(np.sum(np.log(hessian)))
        else:
            factor = linalg.cho_factor(hessian)
            logdet = 2.0 * float(np.sum(np.log(np.diag(factor[0]))))
        deviance = -2.0 * loglik + u @ u + logdet
        if not with_gradient:
            return deviance, None
        return deviance, self._gradient(theta, u, mu, w, hessian)

    def _gradient(self, theta, u, mu, w, hessian):
        scale = theta[self.factor_of_column]
        residual = self.y - self.trials * mu
        dw = w * (1.0 - 2.0 * mu)

        # m[k][i] = sum_l theta_l Hinv[c_k(i), c_l(i)], leverage h_i = sum_k theta_k m[k][i].
        if self.n_factors == 1:
            inverse_diag = 1.0 / hessian
            m = [theta[0] * inverse_diag[self.columns[0]]]
        else:
            inverse = linalg.cho_solve(linalg.cho_factor(hessian), np.eye(self.q))
            m = [
                sum(
                    theta[j] * inverse[self.columns[k], self.columns[j]]
                    for j in range(self.n_factors)
                )
                for k in range(self.n_factors)
            ]
        leverage = sum(theta[k] * m[k] for k in range(self.n_factors))
        a = dw * leverage

        # s = H^{-1} Lambda Z^T a, v = Z Lambda s: the implicit change of the mode.
        rhs = scale * self._zt(a)
        if self.n_factors == 1:
            s = rhs / hessian
        else:
            s = linalg.cho_solve(linalg.cho_factor(hessian), rhs)
        v = self._z(scale * s)
        zt_residual = self._zt(residual)

        gradient_beta = self.xt(a - w * v - 2.0 * residual)
        gradient_theta = np.empty(self.n_factors)
        for k in range(self.n_factors):
            u_k = u[self.columns[k]]
            in_factor = self.factor_of_column == k
            gradient_theta[k] = (
                -2.0 * residual @ u_k
                + 2.0 * w @ m[k]
                + a @ u_k
                + s[in_factor] @ zt_residual[in_factor]
                - (v * w) @ u_k
            )
        return np.concatenate([gradient_theta, gradient_beta])


def distinct_rows(X):
    """Return the distinct rows of X and each row's index into them.

    Rows are hashed through a random projection (pandas.factorize, linear time) and the
    result is checked exactly; on a collision it falls back to numpy.unique's sort.
    """
    projection = np.random.default_rng(0).normal(size=X.shape[1])
    codes, _ = pd.factorize(X @ projection)
    # Any row of a code represents it, because the check below compares every row.
    representative = np.empty(codes.max() + 1, dtype=np.intp)
    representative[codes] = np.arange(codes.size)
    patterns = X[representative]
    if not np.array_equal(patterns[codes], X):
        patterns, codes = np.unique(X, axis=0, return_inverse=True)
    return np.ascontiguousarray(patterns), np.asarray(codes).ravel()
