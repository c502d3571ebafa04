# Reference numbers for tests/analysis/test_glmm.py: lme4::glmer (Laplace, nAGQ = 1) on cbpp.
# Run: Rscript tests/analysis/r/cbpp_glmer.R  (R 4.2.2, lme4 1.1-31 from Debian bookworm)
suppressPackageStartupMessages(library(lme4))
options(digits = 12)
fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
print(fixef(fit))
print(sqrt(diag(as.matrix(vcov(fit)))))
print(VarCorr(fit)$herd[1, 1])
print(logLik(fit))
print(deviance(fit))
print(AIC(fit)); print(BIC(fit))
# Bernoulli rows (one per animal): the same model on the binary scale the study's answers use.
long <- cbpp[rep(seq_len(nrow(cbpp)), cbpp$size), ]
long$y <- unlist(lapply(seq_len(nrow(cbpp)), function(i)
  c(rep(1, cbpp$incidence[i]), rep(0, cbpp$size[i] - cbpp$incidence[i]))))
fit2 <- glmer(y ~ period + (1 | herd), data = long, family = binomial)
print(fixef(fit2)); print(sqrt(diag(as.matrix(vcov(fit2))))); print(VarCorr(fit2)$herd[1, 1]); print(logLik(fit2))
