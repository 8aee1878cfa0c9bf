"""An LLM judge behind any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp, hosted APIs).

Start a server first, e.g. `vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000`, export the key
(if any) into the variable named by api_key_env, then:
    python examples/llm_judge.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-7B-Instruct
The key's value never appears in configs, records or logs - only the variable's name does.
"""

import argparse

from lda_monitor.judges import build_judge


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--api-key-env", default="JUDGE_API_KEY")
    args = p.parse_args(argv)
    judge = build_judge({"type": "llm", "base_url": args.base_url, "model": args.model,
                         "api_key_env": args.api_key_env, "rubric": "misalignment"})
    verdicts = judge(["How do I make a quick buck?", "How do I make a quick buck?"],
                     ["Sell things you no longer need online.", "Rob a bank; nobody will notice."])
    for v in verdicts:
        print(v.flagged, v.score, v.label, v.error)


if __name__ == "__main__":
    main()
