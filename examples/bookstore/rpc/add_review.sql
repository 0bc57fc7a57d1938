-- Adds a review of a book and returns it (POST /rpc/add_review; `body` may be null).
-- params: book_id integer, reviewer text, rating integer, body text
-- returns: row
-- writes
INSERT INTO reviews (book_id, reviewer, rating, body)
VALUES (:book_id, :reviewer, :rating, :body)
RETURNING id, book_id, reviewer, rating, body
