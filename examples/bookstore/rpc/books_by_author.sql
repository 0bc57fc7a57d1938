-- Books by an author (any part of the name) with at least a minimum average review rating;
-- a book without reviews counts as rated 0. `sqlite-rest demo` serves it at
-- /rpc/books_by_author (GET or POST).
-- params: author text, min_rating real
-- returns: setof
SELECT b.id, b.title, a.name AS author, b.published, b.price,
       round(coalesce(avg(r.rating), 0), 2) AS rating, count(r.id) AS reviews
FROM books b
JOIN authors a ON a.id = b.author_id
LEFT JOIN reviews r ON r.book_id = b.id
WHERE a.name LIKE '%' || :author || '%'
GROUP BY b.id
HAVING coalesce(avg(r.rating), 0) >= :min_rating
ORDER BY rating DESC, b.title
