/* Wall-clock time in microseconds since the epoch: what events record as
 * received and items as published (not for measuring intervals: use
 * uv_now or uv_hrtime there). */
#ifndef MAILPUBSUB_CLOCK_H
#define MAILPUBSUB_CLOCK_H

long long clock_now_us(void);

#endif
