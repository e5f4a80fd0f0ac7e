# CPU image of the scheduled index maintenance job (compaction, then garbage collection), run by AWS
# Batch on the CPU compute environment. Built by `cdk deploy` with the repository as context (the CDK
# app sends only the root manifests and the workspaces). No CUDA: compaction merges stored vectors.
FROM public.ecr.aws/docker/library/node:20-bookworm-slim

# hnswlib-node compiles at install.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json .npmrc tsconfig.json ./
COPY layers/ layers/
COPY functions/ functions/
COPY cli/package.json cli/
COPY bench/package.json bench/
COPY infra/package.json infra/
COPY infra/jobs/ infra/jobs/

# .npmrc skips onnxruntime's CUDA download; tsx (a dependency of the CLI) runs the TypeScript entry.
ENV NODE_ENV=production
RUN npm ci --omit=dev && apt-get purge -y g++ make python3 && apt-get autoremove -y

RUN useradd --create-home --uid 10001 cohort
USER cohort
ENTRYPOINT ["node", "--import", "tsx", "infra/jobs/maintenance.ts"]
