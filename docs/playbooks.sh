#!/usr/bin/env bash
# Writes docs/playbooks.md: every playbook's description and its `runbook graph`.
#   bash docs/playbooks.sh > docs/playbooks.md
set -euo pipefail
cd "$(dirname "$0")/.."
RUNBOOK=${RUNBOOK:-"cargo run -q --"}
echo "# The playbooks"
echo
echo "Each playbook's header maps every step of its procedure in the DR document to a playbook"
echo "step or to a named manual follow-up; it is repeated here above its graph."
echo
echo "Each graph is the output of \`runbook graph FILE\` (Mermaid); ✋ marks approvals. Regenerate"
echo "this page with \`bash docs/playbooks.sh > docs/playbooks.md\`; a test checks it is current."
for f in playbooks/*.yaml; do
  echo
  echo "## \`$f\`"
  echo
  grep -m1 "^description:" "$f" | sed 's/^description: //'
  echo
  # The header comment: how the DR document's procedure maps onto the steps.
  echo '```text'
  sed -n '2,/^apiVersion:/p' "$f" | grep '^#' | sed -e 's/^# \{0,1\}//'  | sed '/./,$!d'
  echo '```'
  echo
  echo '```mermaid'
  $RUNBOOK graph "$f"
  echo '```'
done
