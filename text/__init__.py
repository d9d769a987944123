"""Raw text to tagged spans, with no HTTP: tokenizer, sentence splitter, the plan from text to
sentences to results, and the offline tagging loop. Imports ``tagserve.model`` only."""
