#!/usr/bin/env bash
# Retrieval quality on XQuAD, Vietnamese then English: hybrid retrieval (this product)
# and brute-force dense search over whole paragraphs, side by side, from one run each.
#   bash bench/retrieval_quality.sh          (from the project root; ~10 min a language)
# Each run indexes the 240 paragraphs through the real pipeline into a fresh
# knowledge base and deletes it at the end. The JSON lines go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
for language in vi en; do
    echo "== XQuAD ${language}"
    .venv/bin/python manage.py bench_retrieval --squad "../shared/eval/xquad/xquad.${language}.json" \
        --baseline --json | tee "bench/results/xquad-${language}.txt"
done
