"""Device script (GPU machine with PyTorch and transformers): two jobs in one run.

1. The Hugging Face route of the encoder issue: build a random BertModel (fixed seed, the tiny
   fixture's config, the real bert-base-cased vocabulary), save it with save_pretrained in both
   weight formats, run it on clinical sentences through the Hugging Face tokenizer (on the CPU in
   float32, so the reference is exact), and write token ids, hidden states and pooled outputs.
2. The GPU baseline of the embed issue: PyTorch fp16 sequences/s of a random BERT-base at 128
   tokens, per batch size.

Usage: python3 hf_reference.py CONFIG_JSON VOCAB SENTENCES_JSON OUT_DIR
"""
import json
import os
import sys
import time

import torch
import transformers
from transformers import BertConfig, BertModel, BertTokenizerFast


def reference(config_path, vocab_path, sentences_path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(config_path) as f:
        config = BertConfig(**json.load(f))
    torch.manual_seed(20261126)
    model = BertModel(config, add_pooling_layer=True)
    # Random everything (biases and LayerNorm too), larger than BERT's initializer, so that a wrong
    # bias or LayerNorm in the project's graph shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('LayerNorm.weight'):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(os.path.join(out_dir, 'safetensors'))
    # transformers 5 writes safetensors only; pytorch_model.bin is what older save_pretrained wrote:
    # torch.save of the state dict (zip container).
    os.makedirs(os.path.join(out_dir, 'pytorch'), exist_ok=True)
    model.config.to_json_file(os.path.join(out_dir, 'pytorch', 'config.json'))
    torch.save(model.state_dict(), os.path.join(out_dir, 'pytorch', 'pytorch_model.bin'))
    tokenizer, tokenizer_name = load_tokenizer(vocab_path, out_dir)
    with open(sentences_path) as f:
        sentences = json.load(f)
    batch = tokenizer(sentences, padding=True, return_tensors='pt')
    unknown = int((batch['input_ids'] == tokenizer.unk_token_id).sum())
    print('tokenizer', tokenizer_name, 'unknown tokens', unknown, flush=True)
    with torch.no_grad():
        out = model(**batch)
    mask = batch['attention_mask'].unsqueeze(-1).float()
    mean = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    rows = []
    for i, sentence in enumerate(sentences):
        n = int(batch['attention_mask'][i].sum())
        rows.append({
            'text': sentence,
            'ids': batch['input_ids'][i, :n].tolist(),
            'tokens': tokenizer.convert_ids_to_tokens(batch['input_ids'][i, :n].tolist()),
            'hidden': out.last_hidden_state[i, :n].tolist(),
            'mean_pooled': mean[i].tolist(),
            'cls': out.last_hidden_state[i, 0].tolist(),
            'pooler_output': out.pooler_output[i].tolist(),
        })
    meta = {
        'torch': torch.__version__,
        'transformers': transformers.__version__,
        'device': 'cpu',
        'dtype': 'float32',
        'seed': 20261126,
        'padded_batch_length': int(batch['input_ids'].shape[1]),
        'tokenizer': tokenizer_name,
    }
    with open(os.path.join(out_dir, 'outputs.json'), 'w') as f:
        json.dump({'meta': meta, 'sentences': rows}, f)
    print('reference written', meta, flush=True)


def load_tokenizer(vocab_path, out_dir):
    """The Hugging Face BERT tokenizer over the cased vocabulary, checked to have really loaded it."""
    tok_dir = os.path.join(out_dir, 'tokenizer')
    os.makedirs(tok_dir, exist_ok=True)
    with open(vocab_path, 'rb') as src, open(os.path.join(tok_dir, 'vocab.txt'), 'wb') as dst:
        dst.write(src.read())
    with open(os.path.join(tok_dir, 'tokenizer_config.json'), 'w') as f:
        json.dump({'do_lower_case': False, 'tokenizer_class': 'BertTokenizer'}, f)
    attempts = [
        ('BertTokenizerFast.from_pretrained', lambda: BertTokenizerFast.from_pretrained(tok_dir, do_lower_case=False)),
        ('AutoTokenizer.from_pretrained', lambda: transformers.AutoTokenizer.from_pretrained(tok_dir, do_lower_case=False)),
        ('BertTokenizer(vocab=)', lambda: transformers.BertTokenizer(vocab=vocab_path, do_lower_case=False)),
    ]
    for name, make in attempts:
        try:
            tok = make()
        except Exception as e:  # noqa: BLE001 - try the next construction
            print('tokenizer', name, 'failed:', e, flush=True)
            continue
        ids = tok('Patient denies chest pain')['input_ids']
        if tok.cls_token_id == 101 and tok.unk_token_id not in ids:
            return tok, name
        print('tokenizer', name, 'did not load the vocabulary:', ids, flush=True)
    raise SystemExit('no Hugging Face tokenizer construction loaded the vocabulary')


def torch_fp16_bench(config_path):
    if not torch.cuda.is_available():
        return {'error': 'no CUDA device'}
    with open(config_path) as f:
        base = json.load(f)
    base.update(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    config = BertConfig(**base)
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).half().cuda().eval()
    results = {'gpu': torch.cuda.get_device_name(0), 'torch': torch.__version__,
               'attn_implementation': getattr(model.config, '_attn_implementation', None), 'batches': []}
    for batch_size in (32, 64, 128, 256, 512):
        ids = torch.randint(1000, 28000, (batch_size, 128), device='cuda')
        ids[:, 0] = 101
        ids[:, -1] = 102
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            for _ in range(5):
                model(input_ids=ids, attention_mask=mask)
            torch.cuda.synchronize()
            iters = 20
            start = time.perf_counter()
            for _ in range(iters):
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                # Mean pooling and normalization, as the project's graph does.
                v = torch.nn.functional.normalize(h.float().mean(1), dim=-1)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        results['batches'].append({'batch': batch_size, 'seqs_per_s': batch_size * iters / seconds})
        print('torch fp16', batch_size, round(batch_size * iters / seconds), 'seq/s', flush=True)
    results['best_seqs_per_s'] = max(b['seqs_per_s'] for b in results['batches'])
    return results


if __name__ == '__main__':
    config_path, vocab_path, sentences_path, out_dir = sys.argv[1:5]
    reference(config_path, vocab_path, sentences_path, os.path.join(out_dir, 'hf'))
    bench = torch_fp16_bench(config_path)
    with open(os.path.join(out_dir, 'torch-fp16.json'), 'w') as f:
        json.dump(bench, f, indent=2)
