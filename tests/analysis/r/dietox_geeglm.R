# Reference numbers for tests/analysis/test_gee.py: geepack::geeglm on dietox.
# Run: Rscript tests/analysis/r/dietox_geeglm.R  (R 4.2.2, geepack 1.3.9 from Debian bookworm)
suppressPackageStartupMessages(library(geepack))
options(digits = 12)
data(dietox)
dietox$Cu <- as.factor(dietox$Cu)
for (corstr in c("exchangeable", "independence", "ar1")) {
  fit <- geeglm(Weight ~ Time + Cu, id = Pig, data = dietox, family = gaussian, corstr = corstr)
  cat(corstr, "\n"); print(coef(fit)); print(summary(fit)$coefficients[, "Std.err"])
  print(unlist(summary(fit)$corr)); print(summary(fit)$dispersion$Estimate)
}
dietox$heavy <- as.integer(dietox$Weight > 60)
fit <- geeglm(heavy ~ Time + Cu, id = Pig, data = dietox, family = binomial, corstr = "exchangeable")
cat("binomial exchangeable\n"); print(coef(fit)); print(summary(fit)$coefficients[, "Std.err"])
print(unlist(summary(fit)$corr))
