# Fit the benchmark's simulated sweep with lme4::glmer (Laplace, nAGQ = 1) and time it.
# Called by benchmarks/glmm.py as: Rscript benchmarks/glmm_lme4.R SWEEP.csv OUT.csv
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
sweep <- read.csv(args[1], stringsAsFactors = TRUE)
timing <- system.time(
  fit <- glmer(correct ~ model + strategy + sequences + feature + (1 | patient_id),
               data = sweep, family = binomial)
)
seconds <- timing[["elapsed"]]
cpu_seconds <- timing[["user.self"]] + timing[["sys.self"]]
estimates <- c(fixef(fit), patient_id = VarCorr(fit)$patient_id[1, 1])
out <- data.frame(term = names(estimates), estimate = unname(estimates))
out <- rbind(out, data.frame(term = c(".seconds", ".cpu_seconds", ".loglik"),
                             estimate = c(seconds, cpu_seconds, as.numeric(logLik(fit)))))
write.csv(out, args[2], row.names = FALSE)
