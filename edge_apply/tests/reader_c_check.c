/* Compiled as C11: edgeshard_reader.h is valid C, and a C program links libedgeshard_reader.
 * Opening a tenant that has no replica fails with ES_NOT_PUBLISHED and a message. */
#include "edge_apply/edgeshard_reader.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  es_replica *r = NULL;
  es_status st = es_open("/nonexistent-edgeshard-data", "42", &r);
  if (st != ES_NOT_PUBLISHED || r == NULL || strlen(es_last_error(r)) == 0) {
    fprintf(stderr, "es_open: status %d, expected ES_NOT_PUBLISHED with a message\n", (int)st);
    return 1;
  }
  printf("es_open refused as expected: %s\n", es_last_error(r));
  es_close(r);
  es_close(NULL);
  return 0;
}
