# Reference numbers for tests/analysis/test_mrmc.py: OR-Hillis MRMC on the Van Dyke data.
# RJafroc is not packaged for Debian, so this is a second, independent implementation:
# AUCs from pROC (Debian r-cran-proc), jackknife covariances and the OR-Hillis F written out.
# Run: Rscript tests/analysis/r/vandyke_or.R /work/shared/reference/data/vandyke_long.csv
suppressPackageStartupMessages(library(pROC))
options(digits = 12)
d <- read.csv(commandArgs(trailingOnly = TRUE)[1])
mods <- sort(unique(d$modality)); rdrs <- sort(unique(d$reader)); cases <- sort(unique(d$case))
truth <- d$truth[match(cases, d$case)]
rating <- function(m, r) { x <- d[d$modality == m & d$reader == r, ]; x$rating[match(cases, x$case)] }
auc1 <- function(x, t) as.numeric(auc(roc(t, x, levels = c(0, 1), direction = "<", quiet = TRUE)))
I <- length(mods); J <- length(rdrs); K <- length(cases)
theta <- matrix(NA, I, J); jk <- array(NA, c(K, I, J))
for (i in 1:I) for (j in 1:J) {
  x <- rating(mods[i], rdrs[j]); theta[i, j] <- auc1(x, truth)
  for (k in 1:K) jk[k, i, j] <- auc1(x[-k], truth[-k])
}
print(theta); print(rowMeans(theta))
flat <- matrix(jk, K, I * J)  # column index: modality varies fastest
cv <- cov(flat) * (K - 1)^2 / K
mi <- rep(1:I, J); ri <- rep(1:J, each = I)
sm <- outer(mi, mi, "=="); sr <- outer(ri, ri, "==")
cov2 <- mean(cv[sm & !sr]); cov3 <- mean(cv[!sm & !sr])
msT <- J * sum((rowMeans(theta) - mean(theta))^2) / (I - 1)
inter <- theta - outer(rowMeans(theta), colMeans(theta), "+") + mean(theta)
msTR <- sum(inter^2) / ((I - 1) * (J - 1))
den <- msTR + J * max(cov2 - cov3, 0)
F <- msT / den; ddf <- den^2 / (msTR^2 / ((I - 1) * (J - 1)))
cat("var", mean(cv[sm & sr]), "cov1", mean(cv[!sm & sr]), "cov2", cov2, "cov3", cov3, "\n")
cat("F", F, "ddf", ddf, "p", 1 - pf(F, I - 1, ddf), "\n")
se <- sqrt(2 * den / J); diff <- mean(theta[1, ]) - mean(theta[2, ])
cat("diff", diff, "se", se, "ci", diff + c(-1, 1) * qt(0.975, ddf) * se, "\n")
